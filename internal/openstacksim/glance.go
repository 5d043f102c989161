package openstacksim

import (
	"crypto/md5"
	"crypto/sha512"
	"encoding/hex"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Glance v2: the images of Config.Images, listed and shown as Glance does.

type image struct {
	Image
	checksum, hash string
	created        time.Time
}

func newImage(im Image) *image {
	if im.DiskFormat == "" {
		im.DiskFormat = "raw"
	}
	sum := md5.Sum([]byte(im.ID))
	h := sha512.Sum512([]byte(im.ID))
	return &image{Image: im, checksum: hex.EncodeToString(sum[:]), hash: hex.EncodeToString(h[:]), created: startTime}
}

func (s *Sim) findImage(id string) *image {
	for _, im := range s.images {
		if im.ID == id {
			return im
		}
	}
	return nil
}

func (s *Sim) routeGlance() {
	s.mux.HandleFunc("GET /image/{$}", s.glanceVersions)
	s.mux.HandleFunc("GET /image/v2/images", s.authed(s.listImages))
	s.mux.HandleFunc("GET /image/v2/images/{id}", s.authed(s.getImage))
	s.mux.HandleFunc("/image/", s.notFound(func(w http.ResponseWriter, r *http.Request) {
		glanceError(w, http.StatusNotFound, "The resource could not be found.")
	}))
}

// glanceError writes Glance's error body, which is webob's HTML page even
// to JSON clients.
func glanceError(w http.ResponseWriter, code int, detail string) {
	title := strconv.Itoa(code) + " " + http.StatusText(code)
	w.Header().Set("Content-Type", "text/html; charset=UTF-8")
	w.WriteHeader(code)
	_, _ = w.Write([]byte("<html>\n <head>\n  <title>" + title + "</title>\n </head>\n <body>\n  <h1>" + title +
		"</h1>\n  " + detail + "<br /><br />\n\n\n\n </body>\n</html>"))
}

func (s *Sim) glanceVersions(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusMultipleChoices, map[string]any{"versions": []any{map[string]any{
		"id": "v2.16", "status": "CURRENT",
		"links": []any{map[string]any{"rel": "self", "href": s.baseURL(r) + "/image/v2/"}}}}})
}

func (s *Sim) imageView(im *image) map[string]any {
	v := map[string]any{
		"owner_specified.openstack.md5": "", "owner_specified.openstack.sha256": "",
		"owner_specified.openstack.object": "images/" + im.Name,
		"name":                             im.Name, "disk_format": im.DiskFormat, "container_format": "bare", "visibility": "public",
		"size": im.Size, "virtual_size": im.Size, "status": "active", "checksum": im.checksum,
		"protected": false, "min_ram": im.MinRAM, "min_disk": im.MinDisk, "owner": s.cfg.ProjectID,
		"os_hidden": false, "os_hash_algo": "sha512", "os_hash_value": im.hash, "id": im.ID,
		"created_at": im.created.Format(isoSeconds), "updated_at": im.created.Format(isoSeconds),
		"tags": []string{}, "self": "/v2/images/" + im.ID, "file": "/v2/images/" + im.ID + "/file",
		"schema": "/v2/schemas/image", "stores": "fs",
	}
	if im.OSDistro != "" {
		v["os_distro"] = im.OSDistro
	}
	if im.OSVersion != "" {
		v["os_version"] = im.OSVersion
	}
	return v
}

// listImages supports Glance's name, status, visibility, disk_format and
// id filters with limit/marker paging.
func (s *Sim) listImages(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit := 25
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 0 {
			glanceError(w, http.StatusBadRequest, "limit param must be an integer")
			return
		}
		limit = n
	}
	s.mu.Lock()
	// The marker is looked for among all images, filtered or not.
	after, found := afterMarker(s.images, func(im *image) string { return im.ID }, q.Get("marker"))
	page, more := firstN(filter(after, func(im *image) bool { return imageMatches(im, q) }), limit)
	out := viewsOf(page, s.imageView)
	s.mu.Unlock()
	if !found {
		glanceError(w, http.StatusBadRequest, "marker not found")
		return
	}
	first := "/v2/images"
	if len(q) > 0 {
		fq := url.Values{}
		for k, v := range q {
			if k != "marker" {
				fq[k] = v
			}
		}
		if len(fq) > 0 {
			first += "?" + fq.Encode()
		}
	}
	body := map[string]any{"images": out, "first": first, "schema": "/v2/schemas/images"}
	if more && len(page) > 0 { // limit=0: an empty page and no next, as Glance
		body["next"] = "/v2/images?" + withMarker(q, page[len(page)-1].ID)
	}
	writeJSON(w, http.StatusOK, body)
}

func imageMatches(im *image, q url.Values) bool {
	check := func(key, have string) bool {
		v := q.Get(key)
		return v == "" || v == have
	}
	return check("name", im.Name) && check("status", "active") && check("visibility", "public") &&
		check("disk_format", im.DiskFormat) && check("id", im.ID) && check("container_format", "bare")
}

func (s *Sim) getImage(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	s.mu.Lock()
	im := s.findImage(id)
	var v map[string]any
	if im != nil {
		v = s.imageView(im)
	}
	s.mu.Unlock()
	if im == nil {
		glanceError(w, http.StatusNotFound, "No image found with ID "+id)
		return
	}
	writeJSON(w, http.StatusOK, v)
}
