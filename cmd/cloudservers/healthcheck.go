package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"
)

// runHealthcheck is the container image's HEALTHCHECK (the image has no
// shell and no curl): GET the URL given, or $CLOUDSERVERS_HEALTH_URL, and
// succeed on a 2xx answer within 5 s.
func runHealthcheck(ctx context.Context, args []string) error {
	url := os.Getenv("CLOUDSERVERS_HEALTH_URL")
	if len(args) > 0 {
		url = args[0]
	}
	if url == "" {
		return errors.New("no URL: give one, or set CLOUDSERVERS_HEALTH_URL (an API's /readyz, a bridge's or a worker's /healthz)")
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	return nil
}
