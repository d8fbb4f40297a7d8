package main

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

// diskInfo is one VM disk as written to the manifest.
type diskInfo struct {
	Key        int32  `json:"key"`
	Index      int    `json:"index"`
	Datastore  string `json:"datastore"`
	DCPath     string `json:"dc_path"`
	FileName   string `json:"file_name"`   // backing.fileName: "[LocalDS_0] vm/disk1.vmdk" (the descriptor)
	FlatPath   string `json:"flat_path"`   // datastore-relative path of the data file: "vm/disk1-flat.vmdk"
	Download   string `json:"download"`    // "/folder/<flat_path>?dcPath=..&dsName=.." on the SDK host
	Capacity   int64  `json:"capacity"`    // config.hardware.device[].capacityInBytes
	Size       int64  `json:"size"`        // apparent size of the flat file
	SHA256     string `json:"sha256"`      // of the whole flat file
	Allocated  int64  `json:"allocated"`   // bytes actually allocated (the rest are holes)
	IdentityAt int64  `json:"identity_at"` // offset of the per-disk identity block, -1 if not seeded
	local      string // path of the flat file on this machine
}

// vmInfo is one VM as written to the manifest.
type vmInfo struct {
	Name         string      `json:"name"`
	Moref        string      `json:"moref"`
	InstanceUUID string      `json:"instance_uuid"`
	UUID         string      `json:"uuid"`
	Datacenter   string      `json:"datacenter"`
	Host         string      `json:"host"`
	PowerState   string      `json:"power_state"`
	Networks     []string    `json:"networks"`      // moref of NIC i's network
	NetworkNames []string    `json:"network_names"` // name of NIC i's network
	Disks        []*diskInfo `json:"disks"`
	ref          types.ManagedObjectReference
}

type inventory struct {
	client *vim25.Client
	vms    []*vmInfo
	counts map[string]any
}

func (inv *inventory) diskCount() int {
	n := 0
	for _, vm := range inv.vms {
		n += len(vm.Disks)
	}
	return n
}

// sim wraps the model's registry with the few reads and writes we need while building.
// Everything here runs before the server starts, so nothing else touches the objects.
type sim struct {
	ctx    context.Context
	model  *simulator.Model
	client *vim25.Client
	seed   *seeder
}

func (s *sim) get(ref types.ManagedObjectReference) mo.Entity {
	return s.model.Map().Get(ref).(mo.Entity)
}

func (s *sim) name(ref types.ManagedObjectReference) string { return s.get(ref).Entity().Name }

// datacenter returns the Datacenter above e.
func (s *sim) datacenter(e mo.Entity) mo.Entity {
	for e.Entity().Self.Type != "Datacenter" {
		e = s.get(*e.Entity().Parent)
	}
	return e
}

// all returns the entities of the given type in datacenter dc, sorted by name.
func (s *sim) all(kind string, dc mo.Entity) []mo.Entity {
	var out []mo.Entity
	for _, e := range s.model.Map().All(kind) {
		if s.datacenter(e).Entity().Self == dc.Entity().Self {
			out = append(out, e)
		}
	}
	slices.SortFunc(out, func(a, b mo.Entity) int { return strings.Compare(a.Entity().Name, b.Entity().Name) })
	return out
}

func (s *sim) update(obj mo.Reference, name string, val any) {
	s.model.Service.Context.Update(obj, []types.PropertyChange{{Name: name, Val: val}})
}

// wait polls a simulator task until it is done. The client's Task.Wait uses a property collector whose
// WaitForUpdatesEx batches changes for 20ms, which made creating 2,000 VMs take 80s instead of a few.
func (s *sim) wait(task *object.Task, err error) (types.AnyType, error) {
	if err != nil {
		return nil, err
	}
	t := s.model.Map().Get(task.Reference()).(*simulator.Task)
	lock := &simulator.Context{} // a lock owner of its own, as simulator.Task.Wait does
	for {
		var info types.TaskInfo
		s.model.Map().WithLock(lock, t, func() { info = t.Info })
		switch info.State {
		case types.TaskInfoStateSuccess:
			return info.Result, nil
		case types.TaskInfoStateError:
			return nil, fmt.Errorf("%s (%T)", info.Error.LocalizedMessage, info.Error.Fault)
		}
		time.Sleep(20 * time.Microsecond)
	}
}

func isUplink(e mo.Entity) bool { return strings.Contains(e.Entity().Name, "-DVUplinks") }

// computePool is where VMs go: a cluster's root pool (round-robin over its hosts) or a standalone host.
type computePool struct {
	prefix string // VM name prefix, as vcsim: DC0_C0_RP0 or DC0_H0
	pool   types.ManagedObjectReference
	hosts  []types.ManagedObjectReference
}

// buildInventory creates the VMs and hands each one to seed (if not nil) as soon as it exists.
func buildInventory(ctx context.Context, model *simulator.Model, c *config, seed *seeder) (*inventory, error) {
	client, err := vim25.NewClient(ctx, model.Service) // in-process, no HTTP
	if err != nil {
		return nil, err
	}
	s := &sim{ctx: ctx, model: model, client: client, seed: seed}
	inv := &inventory{client: client}

	dcs := s.model.Map().All("Datacenter")
	slices.SortFunc(dcs, func(a, b mo.Entity) int { return strings.Compare(a.Entity().Name, b.Entity().Name) })
	for _, e := range dcs {
		if err := s.fillDatacenter(inv, e.(*simulator.Datacenter), c); err != nil {
			return nil, fmt.Errorf("datacenter %s: %w", e.Entity().Name, err)
		}
	}
	inv.counts = s.counts(inv)
	return inv, nil
}

type datastore struct {
	name, local string // local: the directory behind it
	ref         types.ManagedObjectReference
}

// dcPlan is what VMs in one datacenter are built from.
type dcPlan struct {
	dc     *simulator.Datacenter
	folder *object.Folder
	dss    []datastore
	nets   []nicNetwork
}

func (s *sim) fillDatacenter(inv *inventory, dc *simulator.Datacenter, c *config) error {
	var pools []computePool
	var hosts []types.ManagedObjectReference
	for _, e := range s.all("ComputeResource", dc) { // standalone hosts
		cr := e.(*mo.ComputeResource)
		pools = append(pools, computePool{cr.Name, *cr.ResourcePool, cr.Host})
		hosts = append(hosts, cr.Host...)
	}
	for _, e := range s.all("ClusterComputeResource", dc) {
		cr := e.(*simulator.ClusterComputeResource)
		pools = append(pools, computePool{cr.Name + "_RP0", *cr.ResourcePool, cr.Host})
		hosts = append(hosts, cr.Host...)
	}
	if len(hosts) == 0 {
		return nil // nothing can run VMs here
	}
	if err := s.addStandardPortgroups(dc, hosts, c.stdPG); err != nil {
		return err
	}

	plan := dcPlan{dc: dc, folder: object.NewFolder(s.client, dc.VmFolder)}
	var err error
	if plan.nets, err = s.nicNetworks(dc); err != nil {
		return err
	}
	for _, e := range s.all("Datastore", dc) {
		ds := e.(*simulator.Datastore)
		plan.dss = append(plan.dss, datastore{ds.Name, ds.Info.GetDatastoreInfo().Url, ds.Self})
	}

	netVMs := map[types.ManagedObjectReference][]types.ManagedObjectReference{} // the simulator leaves network.vm empty
	for _, p := range pools {
		for i := range c.vm {
			if err := s.ctx.Err(); err != nil {
				return err
			}
			vm, err := s.createVM(&plan, p, i, len(inv.vms), c)
			if err != nil {
				return err
			}
			for _, n := range s.model.Map().Get(vm.ref).(*simulator.VirtualMachine).Network {
				netVMs[n] = append(netVMs[n], vm.ref)
			}
			inv.vms = append(inv.vms, vm)
			if s.seed != nil {
				s.seed.add(vm)
			}
		}
	}
	for net, vms := range netVMs {
		s.update(s.get(net), "vm", vms)
	}
	return nil
}

// createVM creates VM i of pool p; k (the VM's number in the whole inventory) spreads VM homes, disks and
// NICs round-robin over the datastores and networks.
func (s *sim) createVM(plan *dcPlan, p computePool, i, k int, c *config) (*vmInfo, error) {
	name := fmt.Sprintf("%s_VM%d", p.prefix, i)
	host := p.hosts[i%len(p.hosts)] // deterministic placement, unlike vcsim's random one
	home := plan.dss[k%len(plan.dss)]
	spec := types.VirtualMachineConfigSpec{
		Name:    name,
		GuestId: string(types.VirtualMachineGuestOsIdentifierOtherLinux64Guest),
		Files:   &types.VirtualMachineFileInfo{VmPathName: "[" + home.name + "]"},
	}

	var devices object.VirtualDeviceList
	scsi, _ := devices.CreateSCSIController("pvscsi")
	devices = append(devices, scsi)
	ide, _ := devices.CreateIDEController()
	devices = append(devices, ide)
	cdrom, _ := devices.CreateCdrom(ide.(*types.VirtualIDEController))
	devices = append(devices, cdrom)
	for d := range c.disks {
		ds := plan.dss[(k+d)%len(plan.dss)]
		if ds.name != home.name {
			// The simulator creates only the home directory; disks elsewhere need theirs.
			if err := os.MkdirAll(filepath.Join(ds.local, name), 0o700); err != nil {
				return nil, err
			}
		}
		disk := devices.CreateDisk(scsi.(types.BaseVirtualController), ds.ref,
			fmt.Sprintf("[%s] %s/disk%d.vmdk", ds.name, name, d+1))
		disk.CapacityInBytes = int64(c.diskSize)
		disk.CapacityInKB = int64(c.diskSize) / 1024
		devices = append(devices, disk)
	}
	info := &vmInfo{Name: name, Datacenter: plan.dc.Name, Host: s.name(host),
		Networks: []string{}, NetworkNames: []string{}, Disks: []*diskInfo{}} // [] rather than null in JSON
	for n := range c.nics {
		net := plan.nets[(k*c.nics+n)%len(plan.nets)]
		nic, err := devices.CreateEthernetCard("vmxnet3", net.backing)
		if err != nil {
			return nil, err
		}
		devices = append(devices, nic)
		info.Networks = append(info.Networks, net.ref.Value)
		info.NetworkNames = append(info.NetworkNames, s.name(net.ref))
	}
	var err error
	if spec.DeviceChange, err = devices.ConfigSpec(types.VirtualDeviceConfigSpecOperationAdd); err != nil {
		return nil, err
	}

	pool, hostObj := object.NewResourcePool(s.client, p.pool), object.NewHostSystem(s.client, host)
	res, err := s.wait(plan.folder.CreateVM(s.ctx, spec, pool, hostObj))
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", name, err)
	}
	info.ref = res.(types.ManagedObjectReference)
	if c.autostart {
		if _, err := s.wait(object.NewVirtualMachine(s.client, info.ref).PowerOn(s.ctx)); err != nil {
			return nil, fmt.Errorf("power on %s: %w", name, err)
		}
	}

	vm := s.model.Map().Get(info.ref).(*simulator.VirtualMachine)
	info.Moref, info.InstanceUUID, info.UUID = info.ref.Value, vm.Config.InstanceUuid, vm.Config.Uuid
	info.PowerState = string(vm.Runtime.PowerState)
	local := map[string]string{}
	for _, ds := range plan.dss {
		local[ds.name] = ds.local
	}
	for d, dev := range object.VirtualDeviceList(vm.Config.Hardware.Device).SelectByType((*types.VirtualDisk)(nil)) {
		disk := dev.(*types.VirtualDisk)
		var p object.DatastorePath
		p.FromString(disk.Backing.(types.BaseVirtualDeviceFileBackingInfo).GetVirtualDeviceFileBackingInfo().FileName)
		flat := simulator.VirtualDiskBackingFileName(p.Path) // "vm/disk1.vmdk" -> "vm/disk1-flat.vmdk"
		info.Disks = append(info.Disks, &diskInfo{
			Key: disk.Key, Index: d, Datastore: p.Datastore, DCPath: plan.dc.Name, FileName: p.String(),
			FlatPath: flat, Download: folderURL(flat, plan.dc.Name, p.Datastore),
			Capacity: disk.CapacityInBytes, IdentityAt: -1,
			local: filepath.Join(local[p.Datastore], filepath.FromSlash(flat)),
		})
	}
	return info, nil
}

func folderURL(p, dcPath, ds string) string {
	segments := strings.Split(p, "/")
	for i := range segments {
		segments[i] = url.PathEscape(segments[i])
	}
	q := url.Values{"dcPath": {dcPath}, "dsName": {ds}}
	return "/folder/" + path.Join(segments...) + "?" + q.Encode()
}

// addStandardPortgroups adds standard portgroups DCn_PG1.. next to "VM Network" on every host's vSwitch0 and
// fills in the host lists that the simulator leaves empty for standard networks.
func (s *sim) addStandardPortgroups(dc *simulator.Datacenter, hosts []types.ManagedObjectReference, total int) error {
	first := s.get(hosts[0]).(*simulator.HostSystem)
	ns := object.NewHostNetworkSystem(s.client, *first.ConfigManager.NetworkSystem)
	for i := 1; i < total; i++ {
		// The simulator creates the Network object on the first call and refuses a second one with DuplicateName.
		err := ns.AddPortGroup(s.ctx, types.HostPortGroupSpec{
			Name: fmt.Sprintf("%s_PG%d", dc.Name, i), VswitchName: "vSwitch0", Policy: types.HostNetworkPolicy{},
		})
		if err != nil {
			return fmt.Errorf("add standard portgroup: %w", err)
		}
	}
	for _, e := range s.all("Network", dc) {
		net := e.(*mo.Network)
		s.update(net, "host", hosts)
		for _, h := range hosts {
			host := s.get(h).(*simulator.HostSystem)
			if !slices.Contains(host.Network, net.Self) {
				s.update(host, "network", append(slices.Clone(host.Network), net.Self))
			}
			switch cr := s.get(*host.Parent).(type) {
			case *mo.ComputeResource:
				if !slices.Contains(cr.Network, net.Self) {
					s.update(cr, "network", append(slices.Clone(cr.Network), net.Self))
				}
			case *simulator.ClusterComputeResource:
				if !slices.Contains(cr.Network, net.Self) {
					s.update(cr, "network", append(slices.Clone(cr.Network), net.Self))
				}
			}
		}
	}
	return nil
}

type nicNetwork struct {
	ref     types.ManagedObjectReference
	backing types.BaseVirtualDeviceBackingInfo
}

// nicNetworks lists the networks NICs are spread over: distributed and standard portgroups interleaved
// (DVPG0, VM Network, DVPG1, PG1, ...), so the first VM's NIC 0 is where vcsim puts it and 2 NICs use both kinds.
// It also marks the DVS uplink portgroup the way vCenter does, so clients can skip it.
func (s *sim) nicNetworks(dc *simulator.Datacenter) ([]nicNetwork, error) {
	var dvpgs, stds []nicNetwork
	for _, e := range s.all("DistributedVirtualPortgroup", dc) {
		pg := e.(*simulator.DistributedVirtualPortgroup)
		if isUplink(pg) {
			s.update(pg, "config.uplink", true)
			s.update(pg, "tag", []types.Tag{{Key: "SYSTEM/DVS.UPLINKPG"}})
			continue
		}
		b, err := object.NewDistributedVirtualPortgroup(s.client, pg.Self).EthernetCardBackingInfo(s.ctx)
		if err != nil {
			return nil, err
		}
		dvpgs = append(dvpgs, nicNetwork{pg.Self, b})
	}
	std := s.all("Network", dc)
	slices.SortStableFunc(std, func(a, b mo.Entity) int { // "VM Network" first
		return boolCmp(a.Entity().Name != "VM Network", b.Entity().Name != "VM Network")
	})
	for _, e := range std {
		b, err := object.NewNetwork(s.client, e.Entity().Self).EthernetCardBackingInfo(s.ctx)
		if err != nil {
			return nil, err
		}
		stds = append(stds, nicNetwork{e.Entity().Self, b})
	}
	var out []nicNetwork
	for i := 0; i < max(len(dvpgs), len(stds)); i++ {
		if i < len(dvpgs) {
			out = append(out, dvpgs[i])
		}
		if i < len(stds) {
			out = append(out, stds[i])
		}
	}
	return out, nil
}

func boolCmp(a, b bool) int {
	switch {
	case a == b:
		return 0
	case !a:
		return -1
	}
	return 1
}

// counts are the object totals per kind, as a client sees them through a ContainerView.
func (s *sim) counts(inv *inventory) map[string]any {
	n := func(kind string) int { return len(s.model.Map().All(kind)) }
	uplinks := 0
	for _, e := range s.model.Map().All("DistributedVirtualPortgroup") {
		if isUplink(e) {
			uplinks++
		}
	}
	nics := 0
	for _, vm := range inv.vms {
		nics += len(vm.Networks)
	}
	return map[string]any{
		"datacenters":      n("Datacenter"),
		"clusters":         n("ClusterComputeResource"),
		"hosts":            n("HostSystem"),
		"standalone_hosts": n("ComputeResource"),
		"resource_pools":   n("ResourcePool"),
		"vms":              len(inv.vms),
		"datastores":       n("Datastore"),
		"disks":            inv.diskCount(),
		"nics":             nics,
		"dvswitches":       n("VmwareDistributedVirtualSwitch") + n("DistributedVirtualSwitch"),
		"networks": map[string]int{
			"standard":    n("Network"),
			"dvportgroup": n("DistributedVirtualPortgroup") - uplinks,
			"dvuplink":    uplinks,
			"opaque":      n("OpaqueNetwork"),
		},
	}
}
