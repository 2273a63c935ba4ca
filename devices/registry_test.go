package devices

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestRegistryYAMLAndCSVAgree loads the shared test registry from YAML and
// from CSV (which starts with a byte order mark) and wants the same devices.
func TestRegistryYAMLAndCSVAgree(t *testing.T) {
	fromYAML, err := LoadRegistry("testdata/registry.yaml")
	if err != nil {
		t.Fatal(err)
	}
	fromCSV, err := LoadRegistry("testdata/registry.csv")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(fromYAML.All(), fromCSV.All()) {
		t.Errorf("YAML and CSV registries differ:\nyaml %+v\ncsv  %+v", fromYAML.All(), fromCSV.All())
	}
	if fromYAML.Len() != 10 {
		t.Errorf("%d devices, want 10", fromYAML.Len())
	}
	csvBytes, err := os.ReadFile("testdata/registry.csv")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(csvBytes, []byte("\xef\xbb\xbf")) {
		t.Error("testdata/registry.csv should start with a byte order mark")
	}
}

// TestRegistryContents checks the attributes the shared registry was
// written with, as parsed.
func TestRegistryContents(t *testing.T) {
	reg := testRegistry(t)
	for _, want := range []Device{
		{ID: "bin-002", Kind: KindBin, Site: "西湖,北山路=3号 箱", Street: "北山街道", OrgUnit: "西湖区 环卫所", Lat: 30.259, Lon: 120.13, ReportInterval: 5 * time.Minute},
		{ID: "toilet-01", Kind: KindToilet, Site: "人民公园 公厕", Street: "湖滨街道", OrgUnit: "市容=环卫, 一所", Lat: 30.2556, Lon: 120.1642, ToiletClass: 1, ReportInterval: 10 * time.Minute},
		{ID: "toilet-03", Kind: KindToilet, Site: "农贸市场", Street: "清波街道", OrgUnit: "区环卫所", ToiletClass: 3},
		{ID: "rt-001", Kind: KindRuralToilet, Site: "王家村 3组 户厕", Street: "龙坞镇", Village: "王家村", OrgUnit: "龙坞镇 农办", Lat: 30.1701, Lon: 120.0512, DevEUI: "a1b2c3d4e5f60718", ReportInterval: time.Hour},
		{ID: "water-c1", Kind: KindWater, Site: "清泉水厂 出厂水", Street: "转塘街道", OrgUnit: "区水务局", DevEUI: "0004a30b001c0530", Supply: SupplyCentralized, ReportInterval: 15 * time.Minute},
		{ID: "water-s1", Kind: KindWater, Site: "山坞村 集中供水点", Street: "转塘街道", Village: "山坞村", OrgUnit: "区水务局", DevEUI: "70b3d57ed0041234", Supply: SupplySmall},
	} {
		got, ok := reg.Lookup(want.ID)
		if !ok {
			t.Errorf("%s not found", want.ID)
			continue
		}
		if *got != want {
			t.Errorf("%s:\n got  %+v\n want %+v", want.ID, *got, want)
		}
	}
	for _, eui := range []string{"0004a30b001c0530", "0004A30B001C0530", "00-04-a3-0b-00-1c-05-30", "00:04:A3:0B:00:1C:05:30"} {
		if d, ok := reg.LookupEUI(eui); !ok || d.ID != "water-c1" {
			t.Errorf("LookupEUI(%q) = %v, %v; want water-c1", eui, d, ok)
		}
	}
	for _, eui := range []string{"", "0004a30b001c05", "0004a30b001c053000", "zz04a30b001c0530"} {
		if d, ok := reg.LookupEUI(eui); ok {
			t.Errorf("LookupEUI(%q) = %s, want none", eui, d.ID)
		}
	}
	if _, ok := reg.Lookup("BIN-001"); ok {
		t.Error("ids are case-sensitive")
	}
	var nilReg *Registry
	if _, ok := nilReg.Lookup("bin-001"); ok {
		t.Error("a nil registry knows nothing")
	}
	if _, ok := nilReg.LookupEUI("0004a30b001c0530"); ok {
		t.Error("a nil registry knows nothing")
	}
}

const csvHeader = "id,kind,site,street,village,org_unit,lat,lon,dev_eui,toilet_class,supply,report_interval\n"

// TestRegistryErrors: each bad registry is refused with an error naming
// where (line, or device) and which key is wrong.
func TestRegistryErrors(t *testing.T) {
	long := strings.Repeat("a", 65)
	for _, tc := range []struct {
		name, file, content string
		want                []string // substrings of the error
	}{
		{"csv bad id charset", "r.csv", csvHeader + "bin-1,bin,,,,,,,,,,\nbin 2,bin,,,,,,,,,,\n", []string{"line 3", `"bin 2"`, "id:"}},
		{"csv chinese id", "r.csv", csvHeader + "垃圾箱1,bin,,,,,,,,,,\n", []string{"line 2", "id:"}},
		{"csv 65-char id", "r.csv", csvHeader + long + ",bin,,,,,,,,,,\n", []string{"line 2", long, "id:"}},
		{"csv empty id", "r.csv", csvHeader + ",bin,,,,,,,,,,\n", []string{"line 2", "id:"}},
		{"csv duplicate id", "r.csv", csvHeader + "a,bin,,,,,,,,,,\nb,bin,,,,,,,,,,\na,toilet,,,,,,,,,,\n", []string{"line 4", `"a"`, "id: duplicate of line 2"}},
		{"csv duplicate dev_eui", "r.csv", csvHeader + "a,bin,,,,,,,0004a30b001c0530,,,\nb,bin,,,,,,,0004A30B001C0530,,,\n", []string{"line 3", `"b"`, "dev_eui", "used by a (line 2)"}},
		{"csv unknown kind", "r.csv", csvHeader + "a,truck,,,,,,,,,,\n", []string{"line 2", `"a"`, "kind:", `"truck"`}},
		{"csv bad toilet_class", "r.csv", csvHeader + "a,toilet,,,,,,,,4,,\n", []string{"line 2", "toilet_class:", `"4"`}},
		{"csv toilet_class not a number", "r.csv", csvHeader + "a,toilet,,,,,,,,一,,\n", []string{"line 2", "toilet_class:"}},
		{"csv bad supply", "r.csv", csvHeader + "a,water,,,,,,,,,well,\n", []string{"line 2", "supply:", `"well"`}},
		{"csv report_interval without unit", "r.csv", csvHeader + "a,bin,,,,,,,,,,10\n", []string{"line 2", "report_interval:", `"10"`}},
		{"csv negative report_interval", "r.csv", csvHeader + "a,bin,,,,,,,,,,-5m\n", []string{"line 2", "report_interval:"}},
		{"csv zero report_interval", "r.csv", csvHeader + "a,bin,,,,,,,,,,0s\n", []string{"line 2", "report_interval:"}},
		{"csv bad dev_eui", "r.csv", csvHeader + "a,bin,,,,,,,0004a30b001c05zz,,,\n", []string{"line 2", "dev_eui:"}},
		{"csv short dev_eui", "r.csv", csvHeader + "a,bin,,,,,,,0004a30b,,,\n", []string{"line 2", "dev_eui:"}},
		{"csv bad lat", "r.csv", csvHeader + "a,bin,,,,,91,,,,,\n", []string{"line 2", "lat:"}},
		{"csv lat not a number", "r.csv", csvHeader + "a,bin,,,,,north,,,,,\n", []string{"line 2", "lat:"}},
		{"csv bad lon", "r.csv", csvHeader + "a,bin,,,,,,NaN,,,,\n", []string{"line 2", "lon:"}},
		{"csv unknown column", "r.csv", "id,kind,colour\na,bin,red\n", []string{"header", `"colour"`}},
		{"csv column twice", "r.csv", "id,kind,site,site\na,bin,x,y\n", []string{"header", `"site"`}},
		{"csv no kind column", "r.csv", "id,site\na,x\n", []string{"header", "kind"}},
		{"csv empty", "r.csv", "", []string{"empty"}},
		{"csv wrong number of fields", "r.csv", csvHeader + "a,bin,,,,,,,,,,\nb,bin\n", []string{"line 3"}},
		{"csv control character in site", "r.csv", csvHeader + "a,bin,\"x\ty\",,,,,,,,,\n", []string{"line 2", "site:"}},
		{"csv newline in street", "r.csv", csvHeader + "a,bin,,\"x\ny\",,,,,,,,\n", []string{"line 2", "street:"}},
		{"csv backslash in org_unit", "r.csv", csvHeader + "a,bin,,,,x\\y,,,,,,\n", []string{"line 2", "org_unit:"}},
		{"csv C1 control in village", "r.csv", csvHeader + "a,bin,,,x\u0085y,,,,,,,\n", []string{"line 2", "village:"}},
		{"csv invalid UTF-8", "r.csv", csvHeader + "a,bin,\xff\xfe,,,,,,,,,\n", []string{"line 2", "site:"}},
		{"csv tag too long", "r.csv", csvHeader + "a,bin," + strings.Repeat("x", 257) + ",,,,,,,,,\n", []string{"line 2", "site:"}},

		{"yaml unknown key", "r.yaml", "devices:\n  - id: a\n    kind: bin\n  - id: b\n    kind: bin\n    colour: red\n", []string{"line 4", `"colour"`}},
		{"yaml unknown top-level key", "r.yaml", "device:\n  - id: a\n    kind: bin\n", []string{"line 1", "device"}},
		{"yaml bad id charset", "r.yaml", "devices:\n  - id: a/b\n    kind: bin\n", []string{"line 2", `"a/b"`, "id:"}},
		{"yaml 65-char id", "r.yaml", "devices:\n  - id: " + long + "\n    kind: bin\n", []string{"line 2", "id:"}},
		{"yaml duplicate id", "r.yaml", "devices:\n  - id: a\n    kind: bin\n  - id: a\n    kind: water\n", []string{"line 4", `"a"`, "id: duplicate of line 2"}},
		{"yaml duplicate dev_eui", "r.yaml", "devices:\n  - {id: a, kind: bin, dev_eui: 0004a30b001c0530}\n  - {id: b, kind: bin, dev_eui: \"00:04:A3:0B:00:1C:05:30\"}\n", []string{"line 3", `"b"`, "dev_eui", "line 2"}},
		{"yaml unknown kind", "r.yaml", "devices:\n  - id: a\n    kind: Bin\n", []string{"line 2", "kind:", `"Bin"`}},
		{"yaml bad toilet_class", "r.yaml", "devices:\n  - id: a\n    kind: toilet\n    toilet_class: 0\n", []string{"line 2", "toilet_class:"}},
		{"yaml bad supply", "r.yaml", "devices:\n  - id: a\n    kind: water\n    supply: Centralised\n", []string{"line 2", "supply:"}},
		{"yaml bad report_interval", "r.yaml", "devices:\n  - id: a\n    kind: bin\n    report_interval: 10 minutes\n", []string{"line 2", "report_interval:"}},
		{"yaml control character", "r.yaml", "devices:\n  - id: a\n    kind: bin\n    site: \"x\\u0007y\"\n", []string{"line 2", "site:"}},
		{"yaml backslash", "r.yaml", "devices:\n  - id: a\n    kind: bin\n    street: 'C:\\x'\n", []string{"line 2", "street:"}},
		{"yaml device not a mapping", "r.yaml", "devices:\n  - a\n", []string{"line 2", "mapping"}},
		{"yaml empty", "r.yaml", "", []string{"empty"}},
		{"yaml not yaml", "r.yaml", "devices: [\n", []string{"yaml"}},

		{"other extension", "r.json", "{}", []string{"want a .yaml, .yml or .csv"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), tc.file)
			if err := os.WriteFile(path, []byte(tc.content), 0o644); err != nil {
				t.Fatal(err)
			}
			reg, err := LoadRegistry(path)
			if err == nil {
				t.Fatalf("loaded %d devices, want an error", reg.Len())
			}
			for _, w := range append(tc.want, path) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// TestRegistryAccepts: what a registry file may contain.
func TestRegistryAccepts(t *testing.T) {
	for _, tc := range []struct {
		name, file, content string
		want                Device
	}{
		{"csv with BOM", "r.csv", "\xef\xbb\xbf" + csvHeader + "a,bin,,,,,,,,,,\n", Device{ID: "a", Kind: KindBin}},
		{"csv columns in any order, upper case, spaces", "r.csv", " KIND , Id ,Site\nbin, a , 解放路 1号 \n", Device{ID: "a", Kind: KindBin, Site: "解放路 1号"}},
		{"csv only id and kind", "r.csv", "id,kind\nw,water\n", Device{ID: "w", Kind: KindWater}},
		{"csv CRLF", "r.csv", "id,kind,report_interval\r\na,bin,1h30m\r\n", Device{ID: "a", Kind: KindBin, ReportInterval: 90 * time.Minute}},
		{"csv report_interval in days", "r.csv", "id,kind,report_interval\na,bin,1d12h\n", Device{ID: "a", Kind: KindBin, ReportInterval: 36 * time.Hour}},
		{"csv quoted comma and quote", "r.csv", "id,kind,site\na,bin,\"x, \"\"y\"\"=z\"\n", Device{ID: "a", Kind: KindBin, Site: `x, "y"=z`}},
		{"csv dev_eui with separators", "r.csv", "id,kind,dev_eui\na,bin,00-04-A3-0B-00-1C-05-30\n", Device{ID: "a", Kind: KindBin, DevEUI: "0004a30b001c0530"}},
		{"yaml numbers as text", "r.yml", "devices:\n  - id: 007\n    kind: toilet\n    toilet_class: 2\n    lat: -0.5\n    dev_eui: 0102030405060708\n", Device{ID: "007", Kind: KindToilet, ToiletClass: 2, Lat: -0.5, DevEUI: "0102030405060708"}},
		{"yaml flow style", "r.yaml", "devices: [{id: a, kind: rural_toilet, village: 王家村}]\n", Device{ID: "a", Kind: KindRuralToilet, Village: "王家村"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), tc.file)
			if err := os.WriteFile(path, []byte(tc.content), 0o644); err != nil {
				t.Fatal(err)
			}
			reg, err := LoadRegistry(path)
			if err != nil {
				t.Fatal(err)
			}
			if reg.Len() != 1 || reg.All()[0] != tc.want {
				t.Errorf("got %+v, want [%+v]", reg.All(), tc.want)
			}
		})
	}
}

// TestNewRegistryErrors checks the registry built from Go values: errors
// name the device by position and id, and list at most 20 problems.
func TestNewRegistryErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		devs []Device
		want []string
	}{
		{"bad id", []Device{{ID: "a", Kind: KindBin}, {ID: "a b", Kind: KindBin}}, []string{"device 2 (a b)", "id:"}},
		{"no kind", []Device{{ID: "a"}}, []string{"device 1 (a)", "kind:"}},
		{"duplicate", []Device{{ID: "a", Kind: KindBin}, {ID: "a", Kind: KindBin}}, []string{"device 2 (a)", "id: duplicate of device 1"}},
		{"upper-case dev_eui", []Device{{ID: "a", Kind: KindBin, DevEUI: "0004A30B001C0530"}}, []string{"device 1 (a)", "dev_eui:"}},
		{"duplicate dev_eui", []Device{{ID: "a", Kind: KindBin, DevEUI: "0004a30b001c0530"}, {ID: "b", Kind: KindBin, DevEUI: "0004a30b001c0530"}}, []string{"device 2 (b)", "dev_eui:", "used by a (device 1)"}},
		{"toilet class", []Device{{ID: "a", Kind: KindToilet, ToiletClass: 4}}, []string{"toilet_class:"}},
		{"supply", []Device{{ID: "a", Kind: KindWater, Supply: 9}}, []string{"supply:"}},
		{"report interval", []Device{{ID: "a", Kind: KindBin, ReportInterval: -time.Second}}, []string{"report_interval:"}},
		{"control character", []Device{{ID: "a", Kind: KindBin, OrgUnit: "x\x00"}}, []string{"org_unit:"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewRegistry(tc.devs)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
	t.Run("many errors", func(t *testing.T) {
		devs := make([]Device, 1000)
		for i := range devs {
			devs[i] = Device{ID: "same", Kind: KindBin}
			if i%2 == 0 {
				devs[i].ID = fmt.Sprintf("bad id %d", i)
			}
		}
		_, err := NewRegistry(devs)
		if err == nil {
			t.Fatal("no error")
		}
		if n := strings.Count(err.Error(), "\n") + 1; n > maxRegistryErrors+1 {
			t.Errorf("%d lines of errors, want at most %d", n, maxRegistryErrors+1)
		}
		if !strings.Contains(err.Error(), "too many errors") {
			t.Errorf("error %q does not say there were too many", err)
		}
	})
}

// TestRegistryWriteRead writes the test registry as CSV and YAML and reads
// both back unchanged.
func TestRegistryWriteRead(t *testing.T) {
	devs := testRegistry(t).All()
	dir := t.TempDir()
	for _, name := range []string{"out.csv", "out.yaml", "out.yml"} {
		path := filepath.Join(dir, name)
		if err := WriteFile(path, devs); err != nil {
			t.Fatal(err)
		}
		reg, err := LoadRegistry(path)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !reflect.DeepEqual(reg.All(), devs) {
			t.Errorf("%s: read back\n %+v\nwant\n %+v", name, reg.All(), devs)
		}
	}
	if err := WriteFile(filepath.Join(dir, "out.txt"), devs); err == nil {
		t.Error("WriteFile to .txt: no error")
	}
}
