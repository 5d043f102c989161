package api

import (
	"net/http"

	"github.com/gin-gonic/gin"
)

// SizeView is a server size.
type SizeView struct {
	Name     string `json:"name" example:"s-1vcpu-64mb"`
	VCPUs    int    `json:"vcpus" example:"1"`
	MemoryMB int    `json:"memory_mb" example:"64"`
	DiskGB   int    `json:"disk_gb" example:"1"`
} // @name Size

// ImageView is an image servers boot from.
type ImageView struct {
	Name        string `json:"name" example:"tiny"`
	Description string `json:"description" example:"1 MiB test image"`
} // @name Image

// RegionView is a region servers run in.
type RegionView struct {
	Name        string `json:"name" example:"region-one"`
	Description string `json:"description" example:"the dev cloud"`
} // @name Region

// SizeList lists server sizes.
type SizeList struct {
	Sizes []SizeView `json:"sizes"`
} // @name SizeList

// ImageList lists images.
type ImageList struct {
	Images []ImageView `json:"images"`
} // @name ImageList

// RegionList lists regions.
type RegionList struct {
	Regions []RegionView `json:"regions"`
} // @name RegionList

// listSizes godoc
//
//	@Summary	List server sizes
//	@Tags		catalog
//	@Produce	json,application/problem+json
//	@Security	BearerAuth
//	@Success	200	{object}	SizeList
//	@Failure	400	{object}	Problem	"invalid_request: a query parameter"
//	@Failure	401	{object}	Problem	"unauthorized"
//	@Failure	429	{object}	Problem	"rate_limited"
//	@Header		all	{integer}	RateLimit-Limit		"Requests allowed in a burst"
//	@Header		all	{integer}	RateLimit-Remaining	"Requests left now"
//	@Header		all	{integer}	RateLimit-Reset		"Seconds until the limit is fully restored"
//	@Router		/v1/sizes [get]
func (s *Server) listSizes(c *gin.Context) {
	if !s.noQuery(c) {
		return
	}
	out := SizeList{Sizes: []SizeView{}}
	for _, z := range s.cfg.Catalog.Sizes {
		out.Sizes = append(out.Sizes, SizeView{Name: z.Name, VCPUs: z.VCPUs, MemoryMB: z.MemoryMB, DiskGB: z.DiskGB})
	}
	c.JSON(http.StatusOK, out)
}

// listImages godoc
//
//	@Summary	List images
//	@Tags		catalog
//	@Produce	json,application/problem+json
//	@Security	BearerAuth
//	@Success	200	{object}	ImageList
//	@Failure	400	{object}	Problem	"invalid_request: a query parameter"
//	@Failure	401	{object}	Problem	"unauthorized"
//	@Failure	429	{object}	Problem	"rate_limited"
//	@Header		all	{integer}	RateLimit-Limit		"Requests allowed in a burst"
//	@Header		all	{integer}	RateLimit-Remaining	"Requests left now"
//	@Header		all	{integer}	RateLimit-Reset		"Seconds until the limit is fully restored"
//	@Router		/v1/images [get]
func (s *Server) listImages(c *gin.Context) {
	if !s.noQuery(c) {
		return
	}
	out := ImageList{Images: []ImageView{}}
	for _, i := range s.cfg.Catalog.Images {
		out.Images = append(out.Images, ImageView{Name: i.Name, Description: i.Description})
	}
	c.JSON(http.StatusOK, out)
}

// listRegions godoc
//
//	@Summary	List regions
//	@Tags		catalog
//	@Produce	json,application/problem+json
//	@Security	BearerAuth
//	@Success	200	{object}	RegionList
//	@Failure	400	{object}	Problem	"invalid_request: a query parameter"
//	@Failure	401	{object}	Problem	"unauthorized"
//	@Failure	429	{object}	Problem	"rate_limited"
//	@Header		all	{integer}	RateLimit-Limit		"Requests allowed in a burst"
//	@Header		all	{integer}	RateLimit-Remaining	"Requests left now"
//	@Header		all	{integer}	RateLimit-Reset		"Seconds until the limit is fully restored"
//	@Router		/v1/regions [get]
func (s *Server) listRegions(c *gin.Context) {
	if !s.noQuery(c) {
		return
	}
	out := RegionList{Regions: []RegionView{}}
	for _, r := range s.cfg.Catalog.Regions {
		out.Regions = append(out.Regions, RegionView{Name: r.Name, Description: r.Description})
	}
	c.JSON(http.StatusOK, out)
}
