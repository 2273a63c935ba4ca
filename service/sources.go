package service

import (
	"context"
	"time"

	"github.com/sanitel/sanitel/api"
	"github.com/sanitel/sanitel/devices"
	"github.com/sanitel/sanitel/ingest"
	"github.com/sanitel/sanitel/tickets"

	"github.com/sanitel/sanitel/internal/duration"
)

// deviceSource answers the API's device questions from the registry, the
// tracker's last readings and the ticket store.
type deviceSource struct{ s *Service }

func (d deviceSource) Devices() []api.DeviceStatus {
	all := d.s.registry.All()
	open := d.openTickets()
	now := d.s.opts.Now()
	out := make([]api.DeviceStatus, 0, len(all))
	for i := range all {
		out = append(out, d.status(&all[i], now, open))
	}
	return out
}

func (d deviceSource) Device(id string) (api.DeviceStatus, bool) {
	dev, ok := d.s.registry.Lookup(id)
	if !ok {
		return api.DeviceStatus{}, false
	}
	return d.status(dev, d.s.opts.Now(), d.openTickets()), true
}

// openTickets counts open tickets per device.
func (d deviceSource) openTickets() map[string]int {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	counts, err := d.s.tickets.OpenByDevice(ctx)
	if err != nil {
		d.s.log.Warn("cannot count open tickets per device", "err", err)
	}
	return counts
}

func (d deviceSource) status(dev *devices.Device, now time.Time, open map[string]int) api.DeviceStatus {
	ds := api.DeviceStatus{
		ID: dev.ID, Kind: dev.Kind.String(), Site: dev.Site, Street: dev.Street, Village: dev.Village,
		OrgUnit: dev.OrgUnit, Lat: dev.Lat, Lon: dev.Lon, DevEUI: dev.DevEUI,
		ToiletClass: int(dev.ToiletClass), Supply: dev.Supply.String(),
		LastReading: map[string]float64{}, OpenTickets: open[dev.ID],
	}
	if dev.ReportInterval > 0 {
		ds.ReportInterval = duration.Format(dev.ReportInterval) // as a registry spells it: "10m"
	}
	st, ok := d.s.tracker.Get(dev.ID)
	if !ok {
		return ds
	}
	for _, f := range dev.Kind.Fields() {
		if v, ok := st.LastReading.Get(f); ok {
			ds.LastReading[f.String()] = v
		}
	}
	if !st.LastSeen.IsZero() {
		t := st.LastSeen.UTC()
		ds.LastSeen = &t
	}
	ds.Status = st.Status
	ds.Online = ingest.Online(st, dev, now)
	return ds
}

type deadLetterSource struct{ d *ingest.DeadLetters }

func (s deadLetterSource) DeadLetters() []api.DeadLetter {
	list := s.d.List()
	out := make([]api.DeadLetter, len(list))
	for i, l := range list {
		out[i] = api.DeadLetter{At: l.At, Topic: l.Topic, Reason: l.Reason, Payload: l.Payload}
	}
	return out
}

var _ = tickets.Alert{}
