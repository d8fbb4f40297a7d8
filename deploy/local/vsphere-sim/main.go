// Command vsphere-sim is a vCenter simulator for MTV tests and benchmarks.
//
// It builds an inventory with govmomi's simulator package (the library behind vcsim), then adds what
// vcsim lacks for migration testing: VMs with several disks and NICs, disks whose -flat.vmdk files hold
// real (sparse) bytes with an MBR + ext4 image and a per-disk identity block, a JSON manifest with the
// sha256 of every disk, session-checked and optionally rate-limited /folder downloads.
//
// When ready it prints exactly one line to stdout: MTV_VSPHERE_URL=https://127.0.0.1:PORT/sdk
package main

import (
	"cmp"
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/vmware/govmomi/simulator"
)

type config struct {
	listen, username, password string
	passwordFile               string
	dataDir, manifest          string
	apiVersion                 string

	dc, cluster, host, standalone, vm int
	ds, pg, stdPG                     int
	disks, nics                       int
	diskSize                          byteSize
	fill                              float64
	seed, autostart, folderAuth       bool
	folderRate                        byteSize
}

func parseFlags() *config {
	c := &config{diskSize: 64 << 20}
	flag.StringVar(&c.listen, "l", "127.0.0.1:0", "listen address (loopback only; port 0 picks a free port)")
	flag.StringVar(&c.username, "username", "", "login user name (required)")
	flag.StringVar(&c.password, "password", "", "login password (this or -password-file is required)")
	flag.StringVar(&c.passwordFile, "password-file", "", "read the login password from this file (keeps it out of ps)")
	flag.StringVar(&c.dataDir, "data-dir", os.TempDir(), "parent directory for the datastore directories (a fresh subdirectory is created and removed on exit)")
	flag.StringVar(&c.manifest, "manifest", "", "write a JSON manifest of the inventory and every seeded disk to this path")
	flag.StringVar(&c.apiVersion, "api-version", "", "API version reported by the service (default: the simulator's)")
	flag.IntVar(&c.dc, "dc", 1, "number of datacenters")
	flag.IntVar(&c.cluster, "cluster", 1, "number of clusters per datacenter")
	flag.IntVar(&c.host, "host", 3, "number of hosts per cluster")
	flag.IntVar(&c.standalone, "standalone-host", 1, "number of standalone hosts per datacenter")
	flag.IntVar(&c.vm, "vm", 2, "number of VMs per cluster resource pool and per standalone host")
	flag.IntVar(&c.ds, "ds", 1, "number of local datastores per datacenter (mounted on every host)")
	flag.IntVar(&c.pg, "pg", 1, "number of distributed portgroups per datacenter (on switch DVS0)")
	flag.IntVar(&c.stdPG, "std-pg", 1, "number of standard portgroups per datacenter; the first is 'VM Network', which always exists")
	flag.IntVar(&c.disks, "disks", 1, "disks per VM (0-15, spread over the datastores)")
	flag.IntVar(&c.nics, "nics", 1, "NICs per VM (0-10, spread over the networks)")
	flag.Var(&c.diskSize, "disk-size", "capacity of every disk: bytes or with a KiB/MiB/GiB suffix, a multiple of 1MiB, at least 8MiB")
	flag.Float64Var(&c.fill, "fill", 0.1, "fraction of each disk filled with data (0-0.8); the rest stays holes")
	flag.BoolVar(&c.seed, "seed", true, "write MBR+ext4 images into the disks' -flat.vmdk files")
	flag.BoolVar(&c.autostart, "autostart", true, "power on the VMs")
	flag.BoolVar(&c.folderAuth, "folder-auth", true, "require a logged-in vmware_soap_session cookie on /folder (401 otherwise), as vCenter does")
	flag.Var(&c.folderRate, "folder-rate-limit", "bytes/s per /folder download stream (suffixes allowed), 0 = unlimited")
	flag.Parse()
	if c.passwordFile != "" && c.password == "" {
		data, err := os.ReadFile(c.passwordFile)
		if err != nil {
			log.Fatalf("vsphere-sim: %v", err)
		}
		c.password = strings.TrimRight(string(data), "\r\n")
	}
	return c
}

func (c *config) validate() error {
	switch {
	case c.username == "" || c.password == "":
		return fmt.Errorf("-username and -password (or -password-file) are required")
	case c.dc < 1 || c.cluster < 0 || c.host < 0 || c.standalone < 0 || c.vm < 0:
		return fmt.Errorf("-dc must be at least 1 and -cluster, -host, -standalone-host, -vm not negative")
	case c.ds < 1 || c.pg < 0 || c.stdPG < 1:
		return fmt.Errorf("-ds and -std-pg must be at least 1, -pg not negative")
	case c.disks < 0 || c.disks > 15 || c.nics < 0 || c.nics > 10:
		return fmt.Errorf("-disks must be 0-15 and -nics 0-10")
	case c.diskSize < 8<<20 || c.diskSize%(1<<20) != 0:
		return fmt.Errorf("-disk-size must be a multiple of 1MiB and at least 8MiB")
	case c.fill < 0 || c.fill > 0.8:
		return fmt.Errorf("-fill must be between 0 and 0.8")
	case c.folderRate < 0:
		return fmt.Errorf("-folder-rate-limit must not be negative")
	}
	host, _, err := net.SplitHostPort(c.listen)
	if err != nil {
		return fmt.Errorf("-l: %w", err)
	}
	// Loopback unless MTV_SIM_IN_CONTAINER is set: inside a container the published port is the boundary.
	inContainer := os.Getenv("MTV_SIM_IN_CONTAINER") != ""
	if ip := net.ParseIP(host); !inContainer && host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("-l must be a loopback address, got %q (set MTV_SIM_IN_CONTAINER=1 in a container)", host)
	}
	return nil
}

func main() {
	log.SetFlags(log.LstdFlags | log.Lmicroseconds)
	c := parseFlags()
	if err := c.validate(); err != nil {
		log.Fatalf("vsphere-sim: %v", err)
	}

	if err := os.MkdirAll(c.dataDir, 0o700); err != nil {
		log.Fatalf("vsphere-sim: %v", err)
	}
	work, err := os.MkdirTemp(c.dataDir, "vsphere-sim-")
	if err != nil {
		log.Fatalf("vsphere-sim: %v", err)
	}

	// SIGTERM/SIGINT cancel ctx: the build loops stop at the next VM or disk (so nothing creates files while
	// we remove them), a running server just stops; either way the datastores are removed.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	err = run(ctx, c, work)
	if err == nil {
		<-ctx.Done()
	}
	log.Printf("vsphere-sim: stopping, removing %s", work)
	if rmErr := removeTree(work); rmErr != nil {
		log.Printf("vsphere-sim: %v", rmErr)
	}
	if err != nil && ctx.Err() == nil {
		log.Fatalf("vsphere-sim: %v", err)
	}
}

func run(ctx context.Context, c *config, work string) error {
	start := time.Now()

	// The model creates its datastore directories with os.MkdirTemp("", ...): point $TMPDIR at our work dir.
	if err := os.Setenv("TMPDIR", work); err != nil {
		return err
	}
	model := simulator.VPX()
	model.Datacenter, model.Cluster, model.ClusterHost, model.Host = c.dc, c.cluster, c.host, c.standalone
	model.Datastore, model.Portgroup = c.ds, c.pg
	model.Machine = 0 // VMs are created below, with our disks and NICs
	model.Autostart = c.autostart
	if c.apiVersion != "" {
		model.ServiceContent.About.ApiVersion = c.apiVersion
	}
	model.ServiceContent.About.FullName += " (MTV vsphere-sim)"
	if err := model.Create(); err != nil {
		return fmt.Errorf("create model: %w", err)
	}

	var seed *seeder
	if c.seed {
		dir := filepath.Join(work, "template")
		t, err := buildTemplate(dir, int64(c.diskSize), c.fill)
		if err != nil {
			return fmt.Errorf("disk template: %w", err)
		}
		_ = os.RemoveAll(dir) // the template's data is in memory now
		log.Printf("vsphere-sim: disk template: %d bytes, %d allocated", t.size, t.allocated)
		seed = newSeeder(ctx, t)
	}
	inv, err := buildInventory(ctx, model, c, seed)
	if seed != nil {
		err = cmp.Or(err, seed.finish(inv))
	} else if err == nil {
		err = statDisks(inv)
	}
	if err != nil {
		return err
	}
	log.Printf("vsphere-sim: created %d VMs with %d disks in %s",
		len(inv.vms), inv.diskCount(), time.Since(start).Round(time.Millisecond))

	mux := http.NewServeMux()
	model.Service.ServeMux = mux
	guardFolder(mux, model, c)
	model.Service.Listen = &url.URL{Host: c.listen, User: url.UserPassword(c.username, c.password)}
	model.Service.TLS = new(tls.Config) // the simulator's embedded localhost certificate
	server, err := newServer(model)
	if err != nil {
		return err
	}

	sdk := (&url.URL{Scheme: "https", Host: server.URL.Host, Path: "/sdk"}).String()
	if c.manifest != "" {
		if err := writeManifest(c.manifest, sdk, inv); err != nil {
			return err
		}
	}
	log.Printf("vsphere-sim: ready in %s, datastores under %s", time.Since(start).Round(time.Millisecond), work)
	_, err = fmt.Fprintf(os.Stdout, "MTV_VSPHERE_URL=%s\n", sdk)
	return err
}

// byteSize is a flag value in bytes that accepts binary (KiB, MiB, GiB, TiB; K, M, G, T) and decimal
// (kB, MB, GB, TB) suffixes.
type byteSize int64

func (b *byteSize) String() string { return fmt.Sprint(int64(*b)) }

func (b *byteSize) Set(s string) error {
	units := []struct {
		suffix string
		mult   int64
	}{
		{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30}, {"tib", 1 << 40},
		{"kb", 1e3}, {"mb", 1e6}, {"gb", 1e9}, {"tb", 1e12},
		{"k", 1 << 10}, {"m", 1 << 20}, {"g", 1 << 30}, {"t", 1 << 40}, {"b", 1},
	}
	low := strings.ToLower(strings.TrimSpace(s))
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(low, u.suffix) {
			low, mult = strings.TrimSpace(strings.TrimSuffix(low, u.suffix)), u.mult
			break
		}
	}
	var n int64
	if _, err := fmt.Sscanf(low, "%d", &n); err != nil || fmt.Sprint(n) != low {
		return fmt.Errorf("not a size: %q", s)
	}
	*b = byteSize(n * mult)
	return nil
}

// newServer starts the HTTPS server; the simulator panics when it cannot listen (port taken, for example).
func newServer(model *simulator.Model) (server *simulator.Server, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("start server on %s: %v", model.Service.Listen.Host, p)
		}
	}()
	return model.Service.NewServer(), nil
}
