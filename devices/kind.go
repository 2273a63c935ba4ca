// Package devices is sanitel's vocabulary: device kinds, the per-kind field
// table, the device registry, and the decoding and validation of what
// devices publish. It imports no other sanitel package.
package devices

import (
	"fmt"
	"math"
)

// Kind is a kind of device. The zero value is not a valid kind.
type Kind uint8

// The device kinds, as they appear in MQTT topics and as InfluxDB measurements.
const (
	KindBin Kind = iota + 1
	KindToilet
	KindRuralToilet
	KindWater
)

// Kinds lists every valid kind in a stable order.
var Kinds = []Kind{KindBin, KindToilet, KindRuralToilet, KindWater}

var kindNames = [...]string{"", "bin", "toilet", "rural_toilet", "water"}

// String returns the kind's name: "bin", "toilet", "rural_toilet" or "water".
func (k Kind) String() string {
	if int(k) < len(kindNames) && k != 0 {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Valid reports whether k is one of the four kinds.
func (k Kind) Valid() bool { return k >= KindBin && k <= KindWater }

// ParseKind returns the kind with the given name.
func ParseKind(s string) (Kind, bool) {
	switch s {
	case "bin":
		return KindBin, true
	case "toilet":
		return KindToilet, true
	case "rural_toilet":
		return KindRuralToilet, true
	case "water":
		return KindWater, true
	}
	return 0, false
}

// MarshalText implements encoding.TextMarshaler.
func (k Kind) MarshalText() ([]byte, error) {
	if !k.Valid() {
		return nil, fmt.Errorf("invalid kind %d", uint8(k))
	}
	return []byte(k.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (k *Kind) UnmarshalText(b []byte) error {
	v, ok := ParseKind(string(b))
	if !ok {
		return fmt.Errorf("unknown kind %q (want bin, toilet, rural_toilet or water)", b)
	}
	*k = v
	return nil
}

// Field identifies a measured quantity. Its name carries its unit and is
// the name of the InfluxDB field it is stored in.
type Field uint8

// The fields of every kind. Their order is the order fields are written in.
const (
	FillPct Field = iota
	TempC
	TiltDeg
	BatteryPct
	NH3MgM3
	H2SMgM3
	FlowLpm
	Visitors
	HumidityPct
	TankLevelPct
	PH
	TurbidityNTU
	ChlorineMgL
	ConductivityUScm
	NH3Ppm
	H2SPpm
	NumFields // the number of fields; not a field
)

var fieldNames = [NumFields]string{
	"fill_pct", "temp_c", "tilt_deg", "battery_pct", "nh3_mgm3", "h2s_mgm3",
	"flow_lpm", "visitors", "humidity_pct", "tank_level_pct", "ph",
	"turbidity_ntu", "chlorine_mgl", "conductivity_uscm", "nh3_ppm", "h2s_ppm",
}

// String returns the field's name, e.g. "fill_pct".
func (f Field) String() string {
	if f < NumFields {
		return fieldNames[f]
	}
	return fmt.Sprintf("field(%d)", uint8(f))
}

// ParseField returns the field with the given name, whatever the kind.
func ParseField(name string) (Field, bool) {
	for i, n := range fieldNames {
		if n == name {
			return Field(i), true
		}
	}
	return 0, false
}

// FieldRange is the physical range a kind accepts for a field, inclusive.
type FieldRange struct {
	Min, Max float64
}

// fieldSpec is one row of the field table: a field a kind accepts and its
// physical range. Ranges of ppm aliases are checked after conversion.
type fieldSpec struct {
	field Field
	rng   FieldRange
}

// fieldTable is contract section 3 as data. Everything else (decoding,
// validation, line protocol, the simulator) reads it from here.
var fieldTable = map[Kind][]fieldSpec{
	KindBin: {
		{FillPct, FieldRange{0, 100}},
		{TempC, FieldRange{-40, 120}},
		{TiltDeg, FieldRange{0, 180}},
		{BatteryPct, FieldRange{0, 100}},
	},
	KindToilet: {
		{NH3MgM3, FieldRange{0, 500}},
		{H2SMgM3, FieldRange{0, 500}},
		{FlowLpm, FieldRange{0, 1000}},
		{Visitors, FieldRange{0, 100000}},
		{TempC, FieldRange{-40, 80}},
		{HumidityPct, FieldRange{0, 100}},
	},
	KindRuralToilet: {
		{TankLevelPct, FieldRange{0, 100}},
		{FlowLpm, FieldRange{0, 1000}},
		{NH3MgM3, FieldRange{0, 500}},
		{BatteryPct, FieldRange{0, 100}},
	},
	KindWater: {
		{PH, FieldRange{0, 14}},
		{TurbidityNTU, FieldRange{0, 4000}},
		{ChlorineMgL, FieldRange{0, 20}},
		{ConductivityUScm, FieldRange{0, 200000}},
		{TempC, FieldRange{-5, 60}},
	},
}

// kindInfo is the field table compiled for fast lookups.
type kindInfo struct {
	accepts FieldSet // fields a message may carry (including ppm aliases)
	ranges  [NumFields]FieldRange
	fields  []Field // stored fields in table order
}

var kinds [KindWater + 1]kindInfo

func init() {
	for k, specs := range fieldTable {
		ki := &kinds[k]
		for _, s := range specs {
			ki.accepts |= 1 << s.field
			ki.ranges[s.field] = s.rng
			ki.fields = append(ki.fields, s.field)
		}
		// Gases may arrive in ppm: they are converted to mg/m³ and the raw
		// value is kept beside the converted one.
		if ki.accepts.Has(NH3MgM3) {
			ki.accepts |= 1 << NH3Ppm
			ki.fields = append(ki.fields, NH3Ppm)
		}
		if ki.accepts.Has(H2SMgM3) {
			ki.accepts |= 1 << H2SPpm
			ki.fields = append(ki.fields, H2SPpm)
		}
	}
}

// Fields returns the fields stored for kind k, in table order (ppm aliases last).
func (k Kind) Fields() []Field {
	if !k.Valid() {
		return nil
	}
	return kinds[k].fields
}

// Accepts reports whether kind k carries field f.
func (k Kind) Accepts(f Field) bool { return k.Valid() && kinds[k].accepts.Has(f) }

// Range returns the physical range kind k accepts for field f.
func (k Kind) Range(f Field) (FieldRange, bool) {
	if !k.Accepts(f) || f == NH3Ppm || f == H2SPpm {
		return FieldRange{}, false
	}
	return kinds[k].ranges[f], true
}

// FieldSet is a set of fields, one bit per Field.
type FieldSet uint32

// Has reports whether f is in the set.
func (s FieldSet) Has(f Field) bool { return s&(1<<f) != 0 }

// Values holds a reading's measured values: which fields are present and
// their values. It is a fixed-size value, so a reading needs no map.
type Values struct {
	Present FieldSet
	V       [NumFields]float64
}

// Set stores v for field f.
func (vs *Values) Set(f Field, v float64) {
	vs.Present |= 1 << f
	vs.V[f] = v
}

// Get returns the value of f and whether it is present.
func (vs *Values) Get(f Field) (float64, bool) {
	if vs.Present.Has(f) {
		return vs.V[f], true
	}
	return 0, false
}

// Len returns the number of fields present.
func (vs *Values) Len() int {
	n := 0
	for s := vs.Present; s != 0; s &= s - 1 {
		n++
	}
	return n
}

// Gas conversion factors at 25 °C and 1 atm, as the contract states them.
const (
	nh3PerPpmAt25 = 0.696
	h2sPerPpmAt25 = 1.393
)

// PpmFactors returns the ppm → mg/m³ factors for NH3 and H2S at the given
// reference temperature (°C): the 25 °C factors scaled by the molar volume.
func PpmFactors(refTempC float64) (nh3, h2s float64) {
	scale := (273.15 + 25) / (273.15 + refTempC)
	if refTempC == 25 {
		scale = 1 // keep the contract's factors exact
	}
	return nh3PerPpmAt25 * scale, h2sPerPpmAt25 * scale
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
