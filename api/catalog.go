package api

import (
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/cloudservers/cloudservers"
)

// SizeList lists server sizes.
type SizeList struct {
	Sizes []cloudservers.Size `json:"sizes"`
} // @name SizeList

// ImageList lists images.
type ImageList struct {
	Images []cloudservers.Image `json:"images"`
} // @name ImageList

// RegionList lists regions.
type RegionList struct {
	Regions []cloudservers.Region `json:"regions"`
} // @name RegionList

// listSizes godoc
//
//	@Summary	List server sizes
//	@Tags		catalog
//	@Produce	json
//	@Security	BearerAuth
//	@Success	200	{object}	SizeList
//	@Failure	401	{object}	Problem
//	@Router		/v1/sizes [get]
func (s *Server) listSizes(c *gin.Context) {
	c.JSON(http.StatusOK, SizeList{Sizes: s.cfg.Catalog.Sizes})
}

// listImages godoc
//
//	@Summary	List images
//	@Tags		catalog
//	@Produce	json
//	@Security	BearerAuth
//	@Success	200	{object}	ImageList
//	@Failure	401	{object}	Problem
//	@Router		/v1/images [get]
func (s *Server) listImages(c *gin.Context) {
	c.JSON(http.StatusOK, ImageList{Images: s.cfg.Catalog.Images})
}

// listRegions godoc
//
//	@Summary	List regions
//	@Tags		catalog
//	@Produce	json
//	@Security	BearerAuth
//	@Success	200	{object}	RegionList
//	@Failure	401	{object}	Problem
//	@Router		/v1/regions [get]
func (s *Server) listRegions(c *gin.Context) {
	c.JSON(http.StatusOK, RegionList{Regions: s.cfg.Catalog.Regions})
}
