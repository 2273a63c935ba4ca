package devices

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"testing"
)

// benchInputs are the messages BenchmarkDecode decodes, one per kind of
// traffic. Their names are benchstat sub-benchmark names.
var benchInputs = []struct {
	name, topic, payload string
}{
	{"bin", "sanitation/bin/bin-001/telemetry",
		`{"ts":"2026-11-28T08:00:00.250Z","seq":1841,"fill_pct":73.5,"temp_c":21.5,"tilt_deg":3,"battery_pct":88}`},
	{"toilet", "sanitation/toilet/toilet-01/telemetry",
		`{"ts":"2026-11-28T08:00:00Z","seq":7,"nh3_mgm3":0.42,"h2s_mgm3":0.008,"flow_lpm":0.4,"visitors":1532,"temp_c":18.2,"humidity_pct":64.5}`},
	{"rural_toilet", "sanitation/rural_toilet/rt-001/telemetry",
		`{"ts":1795852800000,"seq":99,"tank_level_pct":86.5,"flow_lpm":2.25,"nh3_ppm":1.3,"battery_pct":41}`},
	{"water", "sanitation/water/water-c1/telemetry",
		`{"ts":"2026-11-28T16:00:00.000+08:00","ph":7.21,"turbidity_ntu":0.35,"chlorine_mgl":0.48,"conductivity_uscm":412,"temp_c":14.5}`},
	{"chirpstack", "", ""}, // filled from testdata/decode/cs_water
	{"event", "sanitation/bin/bin-001/event",
		`{"ts":"2026-11-28T08:00:00Z","type":"fire","detail":"temperature 78 C"}`},
}

func benchInput(b *testing.B, i int) (topic string, payload []byte) {
	in := benchInputs[i]
	if in.name != "chirpstack" {
		return in.topic, []byte(in.payload)
	}
	raw, err := os.ReadFile("testdata/decode/cs_water/payload.json")
	if err != nil {
		b.Fatal(err)
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		b.Fatal(err)
	}
	t, err := os.ReadFile("testdata/decode/cs_water/topic.txt")
	if err != nil {
		b.Fatal(err)
	}
	return string(t), buf.Bytes()
}

// BenchmarkDecode measures decoding and validating one reading.
func BenchmarkDecode(b *testing.B) {
	for i := range benchInputs {
		b.Run(benchInputs[i].name, func(b *testing.B) {
			d := testDecoder(b)
			topic, payload := benchInput(b, i)
			var m Message
			if err := d.Decode(topic, payload, testNow, &m); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(payload)))
			b.ReportAllocs()
			for b.Loop() {
				if err := d.Decode(topic, payload, testNow, &m); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func benchMessage(b *testing.B) Message {
	d := testDecoder(b)
	var m Message
	if err := d.Decode("sanitation/toilet/toilet-01/telemetry", []byte(benchInputs[1].payload), testNow, &m); err != nil {
		b.Fatal(err)
	}
	return m
}

func BenchmarkAppendLineProtocol(b *testing.B) {
	m := benchMessage(b)
	buf := AppendLineProtocol(nil, &m)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendLineProtocol(buf[:0], &m)
	}
}

func BenchmarkAppendRecord(b *testing.B) {
	m := benchMessage(b)
	buf := AppendRecord(nil, &m)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendRecord(buf[:0], &m)
	}
}

func BenchmarkDecodeRecord(b *testing.B) {
	m := benchMessage(b)
	rec := AppendRecord(nil, &m)
	reg := testRegistry(b)
	b.SetBytes(int64(len(rec)))
	b.ReportAllocs()
	for b.Loop() {
		if err := DecodeRecord(rec, reg, &m); err != nil {
			b.Fatal(err)
		}
	}
}

// writeBigRegistry writes n generated devices as a registry CSV: unique
// Chinese site names, a few hundred streets, villages and units repeated,
// LoRaWAN EUIs on a third of them.
func writeBigRegistry(path string, n int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	w.WriteString("id,kind,site,street,village,org_unit,lat,lon,dev_eui,toilet_class,supply,report_interval\n")
	kinds := []string{"bin", "bin", "bin", "toilet", "rural_toilet", "water"}
	for i := range n {
		kind := kinds[i%len(kinds)]
		eui, class, supply := "", "", ""
		if i%3 == 0 {
			eui = fmt.Sprintf("70b3d57e%08x", i)
		}
		switch kind {
		case "toilet":
			class = fmt.Sprint(1 + i%3)
		case "water":
			supply = [...]string{"centralized", "small"}[i%2]
		}
		fmt.Fprintf(w, "%s-%07d,%s,解放路 %d号 %s,第%d街道,村%d,\"区环卫所, 第%d所\",%.5f,%.5f,%s,%s,%s,%dm\n",
			kind, i, kind, i, kind, i%97, i%331, i%23, 30+float64(i%1000)/1e4, 120+float64(i%997)/1e4, eui, class, supply, 5+i%4*5)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	return f.Close()
}

// BenchmarkLoadRegistry1M loads a registry CSV of 1,000,000 devices and
// reports the heap the loaded registry keeps.
func BenchmarkLoadRegistry1M(b *testing.B) {
	const n = 1_000_000
	path := filepath.Join(b.TempDir(), "devices.csv")
	if err := writeBigRegistry(path, n); err != nil {
		b.Fatal(err)
	}
	fi, _ := os.Stat(path)
	b.SetBytes(fi.Size())
	// heap is what the loaded registry keeps; peak is how much more heap
	// memory was backed by the OS right after the load than before it
	// (memory returned to the OS first), close to the load's peak.
	var heap, peak int64
	for b.Loop() {
		runtime.GC()
		debug.FreeOSMemory()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		reg, err := LoadRegistry(path)
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		runtime.ReadMemStats(&after)
		peak = max(peak, int64(after.HeapSys-after.HeapReleased)-int64(before.HeapSys-before.HeapReleased))
		runtime.GC()
		runtime.ReadMemStats(&after)
		if reg.Len() != n {
			b.Fatalf("%d devices, want %d", reg.Len(), n)
		}
		heap = int64(after.HeapInuse) - int64(before.HeapInuse)
		runtime.KeepAlive(reg)
		b.StartTimer()
	}
	b.ReportMetric(float64(heap)/(1<<20), "MiB-heap-inuse")
	b.ReportMetric(float64(heap)/n, "B-heap/device")
	b.ReportMetric(float64(peak)/(1<<20), "MiB-heap-peak")
}
