package testenv

import (
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

// writeV2 writes line protocol the way sanitel does: the v2 write API with a
// "db/rp" or "db" bucket and a "user:pass" token.
func writeV2(t *testing.T, i *Influx, bucket, lines string) {
	t.Helper()
	u := i.URL + "/api/v2/write?" + url.Values{"bucket": {bucket}, "precision": {"ms"}}.Encode()
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(lines))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Token user:pass")
	req.Header.Set("Content-Type", "text/plain; charset=utf-8")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("write: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("write to %s: %s: %s", bucket, resp.Status, body)
	}
}

func TestTestenvInflux(t *testing.T) {
	t.Parallel()
	i := StartInflux(t)
	i.CreateDB(t, "sanitel")
	i.CreateDB(t, "sanitel") // creating twice is fine

	ts := time.Date(2026, 11, 28, 8, 0, 0, 250e6, time.UTC)
	writeV2(t, i, "sanitel/autogen",
		"bin,device_id=bin-0001,site=north fill_pct=73.5,battery_pct=88 "+strconv.FormatInt(ts.UnixMilli(), 10)+"\n")

	series := i.Query(t, "sanitel", `SELECT * FROM "bin"`)
	if len(series) != 1 || len(series[0].Values) != 1 {
		t.Fatalf("SELECT * FROM bin = %+v, want one point", series)
	}
	row := series[0].Rows()[0]
	want := map[string]any{"time": ts, "device_id": "bin-0001", "site": "north", "fill_pct": 73.5, "battery_pct": 88.0}
	for col, w := range want {
		if got := row[col]; got != w {
			t.Errorf("%s = %#v, want %#v", col, got, w)
		}
	}
	if n := i.Count(t, "sanitel", "bin"); n != 1 {
		t.Errorf("Count(bin) = %d, want 1", n)
	}
	if n := i.Count(t, "sanitel", "toilet"); n != 0 {
		t.Errorf("Count(toilet) = %d, want 0", n)
	}

	// InfluxDB 1.8 also answers Flux, as Grafana dashboards may ask it.
	recs := i.Flux(t, `from(bucket: "sanitel/autogen")
  |> range(start: 2026-11-28T00:00:00Z, stop: 2026-11-29T00:00:00Z)
  |> filter(fn: (r) => r._measurement == "bin" and r._field == "fill_pct")`)
	if len(recs) != 1 {
		t.Fatalf("flux records = %v, want one", recs)
	}
	if r := recs[0]; r["_value"] != "73.5" || r["device_id"] != "bin-0001" || r["_time"] != "2026-11-28T08:00:00.25Z" {
		t.Errorf("flux record = %v", r)
	}

	// A bucket without a retention policy means the default one.
	writeV2(t, i, "sanitel", "bin,device_id=bin-0002 fill_pct=10 "+strconv.FormatInt(ts.UnixMilli(), 10)+"\n")
	if n := i.Count(t, "sanitel", "bin"); n != 2 {
		t.Errorf("Count(bin) = %d after writing to bucket \"sanitel\", want 2", n)
	}

}

// TestTestenvInfluxRestart checks that data survives a restart and a crash.
func TestTestenvInfluxRestart(t *testing.T) {
	t.Parallel()
	i := StartInfluxWith(t, InfluxOptions{WithoutFlux: true})
	i.CreateDB(t, "sanitel")
	writeV2(t, i, "sanitel/autogen", "bin,device_id=bin-0001 fill_pct=1 1795888800000\nbin,device_id=bin-0002 fill_pct=2 1795888800000\n")

	i.Restart()
	if n := i.Count(t, "sanitel", "bin"); n != 2 {
		t.Errorf("Count(bin) = %d after Restart, want 2", n)
	}
	i.Kill()
	i.Start()
	if n := i.Count(t, "sanitel", "bin"); n != 2 {
		t.Errorf("Count(bin) = %d after Kill and Start, want 2", n)
	}
}

func TestTestenvParseFluxCSV(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		csv     string
		want    []map[string]string
		wantErr bool
	}{
		{
			name: "two tables",
			csv: ",result,table,_value,device_id\r\n,_result,0,1,a\r\n\r\n" +
				",result,table,_value,device_id,site\r\n,_result,1,2,b,x\r\n\r\n",
			want: []map[string]string{
				{"result": "_result", "table": "0", "_value": "1", "device_id": "a"},
				{"result": "_result", "table": "1", "_value": "2", "device_id": "b", "site": "x"},
			},
		},
		{
			name: "annotations",
			csv:  "#datatype,string,long,double\r\n#group,false,false,false\r\n#default,_result,,\r\n,result,table,_value\r\n,,0,3\r\n",
			want: []map[string]string{{"result": "", "table": "0", "_value": "3"}},
		},
		{name: "empty", csv: "\r\n"},
		{name: "error table", csv: "error,reference\r\nbad query,\r\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseFluxCSV(tt.csv)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
			for n := range got {
				for k, v := range tt.want[n] {
					if got[n][k] != v {
						t.Errorf("record %d %s = %q, want %q", n, k, got[n][k], v)
					}
				}
				if len(got[n]) != len(tt.want[n]) {
					t.Errorf("record %d = %v, want %v", n, got[n], tt.want[n])
				}
			}
		})
	}
}
