package simulator

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/sanitel/sanitel/devices"
)

// District is the centre the generated devices lie around.
const (
	DistrictLat = 28.2282
	DistrictLon = 112.9388
)

// DefaultInterval returns how often a device of kind k reports when the
// registry does not say: bins 10 min, toilets 5 min, rural toilets 30 min,
// water probes 15 min.
func DefaultInterval(k devices.Kind) time.Duration {
	switch k {
	case devices.KindBin:
		return 10 * time.Minute
	case devices.KindToilet:
		return 5 * time.Minute
	case devices.KindRuralToilet:
		return 30 * time.Minute
	case devices.KindWater:
		return 15 * time.Minute
	}
	return 10 * time.Minute
}

// area is a street (街道) or a town (镇) of the district, with its
// communities or villages (村居) and places where devices stand.
type area struct {
	name     string
	rural    bool
	dLat     float64 // offset of the area's centre from the district's, degrees
	dLon     float64
	villages []string
	sites    []string
	depot    string // the sanitation unit answering for bins and toilets
}

var areas = []area{
	{name: "解放街道", dLat: 0.004, dLon: -0.006, depot: "区环卫所",
		villages: []string{"解放路社区", "人民路社区", "中山社区", "北门社区", "文化宫社区"},
		sites:    []string{"解放路菜市场", "人民路小学", "中山公园", "文化宫公交站", "北门商业街", "解放小区"}},
	{name: "城南街道", dLat: -0.021, dLon: 0.004, depot: "城南环卫站",
		villages: []string{"南湖社区", "桂花社区", "城南新村社区", "玉泉社区"},
		sites:    []string{"城南农贸市场", "南湖公园", "桂花中学", "城南客运站", "玉泉小区", "南湖广场"}},
	{name: "城北街道", dLat: 0.026, dLon: 0.002, depot: "城北环卫站",
		villages: []string{"北站社区", "建设社区", "丰收社区", "幸福里社区"},
		sites:    []string{"北站公交枢纽", "建设路菜市场", "城北小学", "幸福里小区", "丰收广场"}},
	{name: "东关街道", dLat: 0.002, dLon: 0.024, depot: "区环卫所",
		villages: []string{"东关社区", "朝阳社区", "仓前社区", "滨河社区"},
		sites:    []string{"东关农贸市场", "滨河公园", "朝阳中学", "仓前公交站", "东关老街"}},
	{name: "新华街道", dLat: -0.006, dLon: -0.027, depot: "新华环卫站",
		villages: []string{"新华社区", "梧桐社区", "书院社区", "体育场社区"},
		sites:    []string{"新华菜市场", "体育场公交站", "书院小学", "梧桐公园", "区人民医院"}},
	{name: "桃源镇", rural: true, dLat: 0.095, dLon: -0.071, depot: "桃源镇环卫站",
		villages: []string{"桃源村", "李家村", "杏花村", "上塘村", "下塘村"},
		sites:    []string{"桃源集贸市场", "桃源中心小学", "桃源汽车站", "桃源文化广场"}},
	{name: "青山镇", rural: true, dLat: -0.118, dLon: -0.052, depot: "青山镇环卫站",
		villages: []string{"青山村", "石桥村", "柳树村", "竹林村", "王家湾村"},
		sites:    []string{"青山集贸市场", "青山中学", "青山汽车站", "青山公园"}},
	{name: "河口镇", rural: true, dLat: -0.064, dLon: 0.132, depot: "河口镇环卫站",
		villages: []string{"河口村", "沙洲村", "渡口村", "陈家坝村"},
		sites:    []string{"河口农贸市场", "河口小学", "河口客运码头站", "滨江广场"}},
	{name: "白沙镇", rural: true, dLat: 0.141, dLon: 0.088, depot: "白沙镇环卫站",
		villages: []string{"白沙村", "黄泥村", "新屋村", "马鞍山村"},
		sites:    []string{"白沙集贸市场", "白沙中心小学", "白沙汽车站", "白沙湿地公园"}},
}

var surnames = []string{"王", "李", "张", "刘", "陈", "杨", "黄", "赵", "周", "吴", "徐", "孙", "胡", "朱", "高", "林"}

// Generate returns n devices of a made-up district around DistrictLat,
// DistrictLon, the same for the same (n, seed): bins (most numerous) at
// markets, schools, stations and parks of the urban streets and market
// towns; public toilets of classes 1–3; rural toilets (LoRaWAN) in the
// villages; water probes at plants and network ends (centralized supply)
// and village supply points (small supply), some of them LoRaWAN.
func Generate(n int, seed int64) []devices.Device {
	if n <= 0 {
		return nil
	}
	var counts [devices.KindWater + 1]int
	counts[devices.KindToilet] = int(math.Round(0.15 * float64(n)))
	counts[devices.KindRuralToilet] = int(math.Round(0.20 * float64(n)))
	counts[devices.KindWater] = int(math.Round(0.10 * float64(n)))
	if n >= 4 {
		for _, k := range []devices.Kind{devices.KindToilet, devices.KindRuralToilet, devices.KindWater} {
			counts[k] = max(counts[k], 1)
		}
	} else {
		counts[devices.KindToilet] = min(1, n-1)
		counts[devices.KindRuralToilet] = min(1, max(n-2, 0))
		counts[devices.KindWater] = 0
	}
	counts[devices.KindBin] = n - counts[devices.KindToilet] - counts[devices.KindRuralToilet] - counts[devices.KindWater]

	r := rng{s: hash(uint64(seed), 0x67656e)} // "gen"
	var urban, rural []int
	for i, a := range areas {
		if a.rural {
			rural = append(rural, i)
		} else {
			urban = append(urban, i)
		}
	}
	devs := make([]devices.Device, 0, n)
	for _, k := range devices.Kinds {
		for j := 1; j <= counts[k]; j++ {
			var d devices.Device
			switch k {
			case devices.KindBin:
				d = genBin(&r, j, urban, rural)
			case devices.KindToilet:
				d = genToilet(&r, j, urban, rural)
			case devices.KindRuralToilet:
				d = genRural(&r, j, rural)
			case devices.KindWater:
				d = genWater(&r, j, urban, rural)
			}
			d.Kind = k
			d.ReportInterval = DefaultInterval(k)
			devs = append(devs, d)
		}
	}
	return devs
}

func pick[T any](r *rng, xs []T) T { return xs[r.intn(len(xs))] }

func pickArea(r *rng, urban, rural []int, pUrban float64) *area {
	if r.chance(pUrban) {
		return &areas[pick(r, urban)]
	}
	return &areas[pick(r, rural)]
}

// place puts a device within about spread degrees of the area's centre.
func place(r *rng, d *devices.Device, a *area, spread float64) {
	d.Street = a.name
	d.Lat = round6(DistrictLat + a.dLat + spread*r.norm()/1.7)
	d.Lon = round6(DistrictLon + a.dLon + spread*r.norm()/1.7)
}

func round6(x float64) float64 { return math.Round(x*1e6) / 1e6 }

func genBin(r *rng, j int, urban, rural []int) devices.Device {
	a := pickArea(r, urban, rural, 0.85)
	d := devices.Device{ID: fmt.Sprintf("bin-%06d", j), Village: pick(r, a.villages), OrgUnit: a.depot}
	// Markets get more bins than anywhere else.
	d.Site = pick(r, a.sites)
	if r.chance(0.25) {
		d.Site = a.sites[0]
	}
	place(r, &d, a, 0.008)
	return d
}

func genToilet(r *rng, j int, urban, rural []int) devices.Device {
	a := pickArea(r, urban, rural, 0.8)
	site := pick(r, a.sites)
	d := devices.Device{
		ID:      fmt.Sprintf("toilet-%06d", j),
		Site:    fmt.Sprintf("%s%d号公厕", site, 1+r.intn(3)),
		Village: pick(r, a.villages),
		OrgUnit: a.depot,
	}
	if !a.rural {
		d.OrgUnit = "区公厕管理所"
	}
	// Parks and squares have the new class-1 toilets; markets and old
	// streets the class-3 ones.
	w := [3]float64{0.25, 0.5, 0.25}
	switch siteTypeOf(site) {
	case sitePark:
		w = [3]float64{0.6, 0.35, 0.05}
	case siteMarket:
		w = [3]float64{0.1, 0.4, 0.5}
	}
	u := r.float()
	switch {
	case u < w[0]:
		d.ToiletClass = 1
	case u < w[0]+w[1]:
		d.ToiletClass = 2
	default:
		d.ToiletClass = 3
	}
	place(r, &d, a, 0.008)
	return d
}

func genRural(r *rng, j int, rural []int) devices.Device {
	a := &areas[pick(r, rural)]
	v := pick(r, a.villages)
	d := devices.Device{
		ID:      fmt.Sprintf("rural-%06d", j),
		Site:    fmt.Sprintf("%s%d组%s家", v, 1+r.intn(9), pick(r, surnames)),
		Village: v,
		OrgUnit: strings.TrimSuffix(a.name, "镇") + "镇农业农村办",
		DevEUI:  fmt.Sprintf("a84041%02x%08x", uint8(devices.KindRuralToilet), j),
	}
	place(r, &d, a, 0.02)
	return d
}

func genWater(r *rng, j int, urban, rural []int) devices.Device {
	d := devices.Device{ID: fmt.Sprintf("water-%06d", j)}
	if r.chance(0.5) {
		a := &areas[pick(r, urban)]
		d.Village = pick(r, a.villages)
		d.OrgUnit = "区水务公司"
		d.Supply = devices.SupplyCentralized
		switch u := r.float(); {
		case u < 0.15:
			d.Site = pick(r, []string{"城南水厂出厂水", "北郊水厂出厂水"})
		case u < 0.5:
			d.Site = d.Village + "二次供水泵房"
		default:
			d.Site = d.Village + "管网末梢水"
		}
		place(r, &d, a, 0.01)
	} else {
		a := &areas[pick(r, rural)]
		d.Village = pick(r, a.villages)
		d.OrgUnit = strings.TrimSuffix(a.name, "镇") + "镇供水站"
		d.Supply = devices.SupplySmall
		d.Site = d.Village + "集中供水点"
		place(r, &d, a, 0.02)
	}
	if r.chance(0.6) {
		d.DevEUI = fmt.Sprintf("a84041%02x%08x", uint8(devices.KindWater), j)
	}
	return d
}

// siteType classifies a site by its name, so models also work for
// registries written by hand: a market is busier than a school.
type siteType uint8

const (
	siteOther siteType = iota
	siteMarket
	siteSchool
	siteStation
	sitePark
)

func siteTypeOf(name string) siteType {
	switch {
	case strings.Contains(name, "市场"):
		return siteMarket
	case strings.Contains(name, "学"):
		return siteSchool
	case strings.Contains(name, "站"), strings.Contains(name, "枢纽"), strings.Contains(name, "码头"):
		return siteStation
	case strings.Contains(name, "公园"), strings.Contains(name, "广场"):
		return sitePark
	}
	return siteOther
}
