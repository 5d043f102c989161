package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/cloudservers/cloudservers/internal/config"
)

// fromFile is one flag a configuration file can set: the file's value
// applies when neither the flag nor its variable is given.
type fromFile struct {
	flag, env, value string
}

// load reads the configuration file (-config, else $CLOUDSERVERS_CONFIG;
// none: the zero File) and applies it to the common flags and to extra
// (a command's own), under the command line and the environment.
func (c *common) load(fs *flag.FlagSet, extra func(config.File) []fromFile) (config.File, error) {
	if c.configPath == "" {
		return config.File{}, nil
	}
	f, err := config.Load(c.configPath)
	if err != nil {
		return f, err
	}
	set := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	values := []fromFile{
		{"kafka", "CLOUDSERVERS_KAFKA", strings.Join(f.Kafka.Brokers, ",")},
		{"temporal", "CLOUDSERVERS_TEMPORAL", f.Temporal.Address},
		{"namespace", "CLOUDSERVERS_NAMESPACE", f.Temporal.Namespace},
		{"zookeeper", "CLOUDSERVERS_ZOOKEEPER", f.ZooKeeper},
	}
	if extra != nil {
		values = append(values, extra(f)...)
	}
	for _, v := range values {
		if v.value == "" || set[v.flag] || (v.env != "" && os.Getenv(v.env) != "") || fs.Lookup(v.flag) == nil {
			continue
		}
		if err := fs.Set(v.flag, v.value); err != nil {
			return f, fmt.Errorf("config %s: -%s %q: %w", c.configPath, v.flag, v.value, err)
		}
	}
	return f, nil
}

func intString(p *int) string {
	if p == nil {
		return ""
	}
	return strconv.Itoa(*p)
}

// runConfig: `config check` validates a configuration file and lists every
// problem at once.
func runConfig(ctx context.Context, args []string) error {
	if len(args) < 1 || args[0] != "check" {
		return errors.New("usage: cloudservers config check [-config FILE] (or CLOUDSERVERS_CONFIG)")
	}
	var c common
	fs := flag.NewFlagSet("config check", flag.ContinueOnError)
	c.register(fs)
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if c.configPath == "" {
		return errors.New("no file: set -config FILE or " + config.EnvFile)
	}
	if _, err := config.Load(c.configPath); err != nil {
		return err
	}
	fmt.Printf("%s: ok\n", c.configPath)
	return nil
}
