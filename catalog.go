package cloudservers

// Size is a server size customers choose from. Each maps to a Nova flavor by
// name, so the same catalogue works against the simulator and a real cloud.
type Size struct {
	Name     string `json:"name"`
	Flavor   string `json:"-"`
	VCPUs    int    `json:"vcpus"`
	MemoryMB int    `json:"memory_mb"`
	DiskGB   int    `json:"disk_gb"`
}

// Image is an operating system image customers boot from; Glance is the
// source of truth for its ID, looked up by name.
type Image struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	GlanceName  string `json:"-"`
}

// Region is a place servers run in, mapped to an OpenStack region and the
// networks servers attach to there.
type Region struct {
	Name            string `json:"name"`
	Description     string `json:"description"`
	OpenStackRegion string `json:"-"`
	Network         string `json:"-"` // tenant network name for the server's port
	ExternalNetwork string `json:"-"` // network floating IPs come from
}

// Catalog lists what customers can order. It is configuration, not state.
type Catalog struct {
	Sizes   []Size
	Images  []Image
	Regions []Region
}

// DefaultCatalog matches the minimal OpenStack of the dev stack and the
// simulator: flavors m1.tiny/m1.small, image "tiny", region RegionOne with
// networks net1 and public.
func DefaultCatalog() Catalog {
	return Catalog{
		Sizes: []Size{
			{Name: "s-1vcpu-64mb", Flavor: "m1.tiny", VCPUs: 1, MemoryMB: 64, DiskGB: 1},
			{Name: "s-1vcpu-128mb", Flavor: "m1.small", VCPUs: 1, MemoryMB: 128, DiskGB: 2},
		},
		Images: []Image{
			{Name: "tiny", Description: "1 MiB test image", GlanceName: "tiny"},
		},
		Regions: []Region{
			{Name: "region-one", Description: "the dev cloud", OpenStackRegion: "RegionOne", Network: "net1", ExternalNetwork: "public"},
		},
	}
}

// Size returns the size named name.
func (c Catalog) Size(name string) (Size, bool) {
	for _, s := range c.Sizes {
		if s.Name == name {
			return s, true
		}
	}
	return Size{}, false
}

// Image returns the image named name.
func (c Catalog) Image(name string) (Image, bool) {
	for _, i := range c.Images {
		if i.Name == name {
			return i, true
		}
	}
	return Image{}, false
}

// Region returns the region named name.
func (c Catalog) Region(name string) (Region, bool) {
	for _, r := range c.Regions {
		if r.Name == name {
			return r, true
		}
	}
	return Region{}, false
}
