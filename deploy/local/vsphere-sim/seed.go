package main

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"

	"github.com/vmware/govmomi/object"
)

// Disk layout (all disks have the same size):
//
//	[0, 512)                      MBR, one Linux (0x83) partition
//	[1MiB, size-1MiB)             ext4 "mtv-root": README, etc/hostname, etc/os-release, data/fill-*.bin
//	[size-64KiB, size-60KiB)      identity block: "MTV-SIM-DISK-IDENTITY\n" + JSON (VM, disk) + zero padding
//
// The bytes before the identity block are identical for every disk, so the sha256 of each disk is the
// template's hash state at that offset (computed once) fed with the last 64KiB: hashing 2,000 disks then
// costs 2,000 x 64KiB instead of reading every disk in full.
const (
	blockSize     = 4096
	partOffset    = 1 << 20
	identityTail  = 64 << 10
	identitySize  = blockSize
	identityMagic = "MTV-SIM-DISK-IDENTITY\n"
)

// chunk is a run of non-zero template bytes; everything else in the template is a hole.
type chunk struct {
	off  int64
	data []byte
}

type template struct {
	size      int64
	chunks    []chunk
	allocated int64
	prefix    []byte // marshalled sha256 state after the first size-identityTail bytes
}

func (t *template) identityOffset() int64 { return t.size - identityTail }

func findMke2fs() (string, error) {
	if p, err := exec.LookPath("mke2fs"); err == nil {
		return p, nil
	}
	for _, p := range []string{"/usr/sbin/mke2fs", "/sbin/mke2fs"} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", errors.New("mke2fs not found (install e2fsprogs)")
}

// buildTemplate writes a sparse MBR+ext4 image in dir and loads its data extents into memory.
func buildTemplate(dir string, size int64, fill float64) (*template, error) {
	mke2fs, err := findMke2fs()
	if err != nil {
		return nil, err
	}
	root := filepath.Join(dir, "root")
	for _, d := range []string{"etc", "data"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return nil, err
		}
	}
	partSize := size - 2*partOffset // leave the last MiB unpartitioned for the identity block
	files := map[string]string{
		"README": fmt.Sprintf("MTV vsphere-sim test disk.\n\nThe data/ files are pseudo-random, %d bytes in all.\n"+
			"The last 64KiB of the disk (outside this partition) start with a %q block naming the VM and disk.\n",
			fillBytes(partSize, fill), identityMagic[:len(identityMagic)-1]),
		"etc/hostname":   "mtv-sim\n",
		"etc/os-release": "NAME=\"MTV Sim Linux\"\nID=mtvsim\nVERSION_ID=1\nPRETTY_NAME=\"MTV Sim Linux 1\"\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(root, name), []byte(content), 0o644); err != nil {
			return nil, err
		}
	}
	// Fixed seed: the same flags give the same template.
	rng := rand.NewChaCha8([32]byte{'m', 't', 'v'})
	for i, left := 0, fillBytes(partSize, fill); left > 0; i++ {
		n := min(left, 4<<20)
		buf := make([]byte, n)
		_, _ = rng.Read(buf)
		if err := os.WriteFile(filepath.Join(root, "data", fmt.Sprintf("fill-%03d.bin", i)), buf, 0o644); err != nil {
			return nil, err
		}
		left -= n
	}

	img := filepath.Join(dir, "disk.img")
	f, err := os.Create(img)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		return nil, err
	}
	// lazy_*_init and nodiscard: mke2fs leaves inode tables and journal unwritten, so they stay holes.
	cmd := exec.Command(mke2fs, "-q", "-F", "-t", "ext4", "-b", fmt.Sprint(blockSize), "-m", "0", "-L", "mtv-root",
		"-E", fmt.Sprintf("offset=%d,lazy_itable_init=1,lazy_journal_init=1,nodiscard", partOffset),
		"-d", root, img, fmt.Sprint(partSize/blockSize))
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("%s: %w: %s", cmd, err, out)
	}
	if _, err := f.WriteAt(mbr(partSize), 0); err != nil {
		return nil, err
	}
	if err := os.RemoveAll(root); err != nil {
		return nil, err
	}

	t := &template{size: size}
	if t.chunks, err = dataChunks(f, size); err != nil {
		return nil, err
	}
	// Hash the common prefix once: chunk data with zeros in between.
	h := sha256.New()
	pos, zeros := int64(0), make([]byte, 1<<20)
	writeZeros := func(n int64) {
		for n > 0 {
			k := min(n, int64(len(zeros)))
			h.Write(zeros[:k])
			n -= k
		}
	}
	for _, c := range t.chunks {
		if c.off+int64(len(c.data)) > t.identityOffset() {
			return nil, fmt.Errorf("template data at %d overlaps the identity area", c.off)
		}
		writeZeros(c.off - pos)
		h.Write(c.data)
		pos = c.off + int64(len(c.data))
		t.allocated += int64(len(c.data))
	}
	writeZeros(t.identityOffset() - pos)
	t.prefix, err = h.(encoding.BinaryMarshaler).MarshalBinary()
	return t, err
}

func fillBytes(partSize int64, fill float64) int64 {
	return int64(float64(partSize)*fill) / blockSize * blockSize
}

// mbr is a DOS partition table with one Linux partition from partOffset, partSize bytes long.
func mbr(partSize int64) []byte {
	b := make([]byte, 512)
	binary.LittleEndian.PutUint32(b[440:], 0x4d54560a) // disk signature
	e := b[446:462]
	copy(e, []byte{0x00, 0xfe, 0xff, 0xff, 0x83, 0xfe, 0xff, 0xff}) // not bootable, CHS unused, type Linux
	binary.LittleEndian.PutUint32(e[8:], partOffset/512)
	binary.LittleEndian.PutUint32(e[12:], uint32(partSize/512))
	b[510], b[511] = 0x55, 0xaa
	return b
}

// dataChunks reads the file's data extents (SEEK_DATA/SEEK_HOLE) and drops all-zero blocks within them.
func dataChunks(f *os.File, size int64) ([]chunk, error) {
	const seekData, seekHole = 3, 4 // Linux lseek whence values
	var out []chunk
	for off := int64(0); off < size; {
		start, err := f.Seek(off, seekData)
		if errors.Is(err, syscall.ENXIO) {
			break // no data after off
		} else if err != nil {
			return nil, err
		}
		end, err := f.Seek(start, seekHole)
		if err != nil {
			return nil, err
		}
		buf := make([]byte, end-start)
		if _, err := f.ReadAt(buf, start); err != nil && err != io.EOF {
			return nil, err
		}
		zero := make([]byte, blockSize)
		for i := 0; i < len(buf); i += blockSize {
			j := min(i+blockSize, len(buf))
			if bytes.Equal(buf[i:j], zero[:j-i]) {
				continue
			}
			at := start + int64(i)
			if n := len(out); n > 0 && out[n-1].off >= start && out[n-1].off+int64(len(out[n-1].data)) == at {
				out[n-1].data = buf[out[n-1].off-start : j] // extend the previous run (same buffer)
			} else {
				out = append(out, chunk{at, buf[i:j]})
			}
		}
		off = end
	}
	return out, nil
}

// identity is the per-disk block that makes every disk's content (and sha256) distinct.
func identity(vm *vmInfo, d *diskInfo) ([]byte, error) {
	body, err := json.Marshal(map[string]any{
		"vm": vm.Name, "moref": vm.Moref, "instance_uuid": vm.InstanceUUID, "uuid": vm.UUID,
		"datacenter": vm.Datacenter, "disk_key": d.Key, "disk_index": d.Index,
		"file_name": d.FileName, "capacity": d.Capacity,
	})
	if err != nil {
		return nil, err
	}
	b := make([]byte, identitySize)
	if len(identityMagic)+len(body)+1 > len(b) {
		return nil, fmt.Errorf("identity of %s too long", d.FileName)
	}
	copy(b[copy(b, identityMagic):], append(body, '\n'))
	return b, nil
}

// seed writes one disk: the template's data extents, the identity block, holes elsewhere.
func (t *template) seed(vm *vmInfo, d *diskInfo) error {
	ident, err := identity(vm, d)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(d.local, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Truncate(t.size); err != nil {
		return err
	}
	for _, c := range t.chunks {
		if _, err := f.WriteAt(c.data, c.off); err != nil {
			return err
		}
	}
	if _, err := f.WriteAt(ident, t.identityOffset()); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}

	h := sha256.New()
	if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(t.prefix); err != nil {
		return err
	}
	h.Write(ident)
	h.Write(make([]byte, identityTail-identitySize))
	d.SHA256, d.Size, d.IdentityAt = hex.EncodeToString(h.Sum(nil)), t.size, t.identityOffset()
	d.Allocated, err = allocated(d.local)
	return err
}

func allocated(path string) (int64, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return 0, err
	}
	return st.Blocks * 512, nil
}

// seeder writes disks on background workers while the VMs are still being created: creating VMs keeps
// one core busy in the simulator, writing disks is bound by the page cache, so the two overlap well.
type seeder struct {
	ctx  context.Context
	t    *template
	jobs chan seedJob
	wg   sync.WaitGroup
	mu   sync.Mutex
	err  error
}

type seedJob struct {
	vm   *vmInfo
	disk *diskInfo
}

func newSeeder(ctx context.Context, t *template) *seeder {
	s := &seeder{ctx: ctx, t: t, jobs: make(chan seedJob, 64)}
	for range max(2, runtime.NumCPU()) {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			for j := range s.jobs {
				if ctx.Err() != nil {
					continue // drain
				}
				if err := t.seed(j.vm, j.disk); err != nil {
					s.mu.Lock()
					s.err = cmp.Or(s.err, fmt.Errorf("%s: %w", j.disk.FileName, err))
					s.mu.Unlock()
				}
			}
		}()
	}
	return s
}

// add queues the disks of a VM that has just been created.
func (s *seeder) add(vm *vmInfo) {
	for _, d := range vm.Disks {
		s.jobs <- seedJob{vm, d}
	}
}

// finish waits for the queued disks and refreshes the VMs' file layouts, which the simulator computes
// from the files' sizes (layoutEx.file, storage usage).
func (s *seeder) finish(inv *inventory) error {
	close(s.jobs)
	s.wg.Wait()
	if err := cmp.Or(s.err, s.ctx.Err()); err != nil || inv == nil {
		return err // inv is nil if building the inventory failed
	}
	for _, vm := range inv.vms {
		if err := object.NewVirtualMachine(inv.client, vm.ref).RefreshStorageInfo(s.ctx); err != nil {
			return err
		}
	}
	return nil
}

// statDisks fills size, hash and allocation of unseeded (empty) disks.
func statDisks(inv *inventory) error {
	for _, vm := range inv.vms {
		for _, d := range vm.Disks {
			data, err := os.ReadFile(d.local)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(data)
			d.SHA256, d.Size = hex.EncodeToString(sum[:]), int64(len(data))
			if d.Allocated, err = allocated(d.local); err != nil {
				return err
			}
		}
	}
	return nil
}

// writeManifest writes the manifest atomically (readers may poll for it).
func writeManifest(path, sdk string, inv *inventory) error {
	m := map[string]any{
		"url":    sdk,
		"counts": inv.counts,
		"layout": map[string]any{
			"partition_offset": partOffset, "identity_tail": identityTail,
			"identity_size": identitySize, "identity_magic": identityMagic,
		},
		"vms": inv.vms,
	}
	data, err := json.MarshalIndent(m, "", " ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
