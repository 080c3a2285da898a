// Command csi-hostpath is a TEST FIXTURE: a minimal CSI driver whose volumes are directories on
// this host, so that the real external-provisioner, external-snapshotter and snapshot-controller
// can run against Amber's test API server (test/testenv/csi.ts). It is not a storage driver for
// any real cluster, and it is our own code: the upstream csi-driver-host-path cannot be fetched
// here (README.md, "Volume snapshots").
//
// It serves the CSI Identity and Controller services (CSI spec v1.13) on a unix socket:
//
//	volumes/<id>/          a volume's data; <id> is the name the provisioner asked for (the PV name)
//	volumes/<id>.json      its requested capacity
//	snapshots/<id>.tar     a snapshot: a tar of the volume directory as it was, symlinks stored as
//	                       links (never followed), special files as headers without content
//	snapshots/<id>.json    its source volume, size and creation time
//
// CreateVolume and CreateSnapshot are idempotent by name, as the sidecars retry them. There is no
// Node service (nothing mounts these volumes), no restore from a snapshot, no expansion.
package main

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Names become file names: no dots (so "<id>.json" never names another volume), no slashes.
var validName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$`)

const defaultCapacity = 1 << 20

type volumeMeta struct {
	CapacityBytes int64 `json:"capacityBytes"`
}

type snapshotMeta struct {
	SourceVolumeID string    `json:"sourceVolumeId"`
	SizeBytes      int64     `json:"sizeBytes"`
	CreationTime   time.Time `json:"creationTime"`
}

type driver struct {
	csi.UnimplementedIdentityServer
	csi.UnimplementedControllerServer
	name  string
	state string
	mu    sync.Mutex // one call at a time: the fixture needs no more
}

func main() {
	socket := flag.String("socket", "", "path of the unix socket to serve CSI on")
	state := flag.String("state-dir", "", "directory holding volumes/ and snapshots/")
	name := flag.String("driver-name", "hostpath.amber.test", "the CSI driver name")
	flag.Parse()
	if *socket == "" || *state == "" {
		log.Fatal("--socket and --state-dir are required")
	}
	for _, dir := range []string{"volumes", "snapshots"} {
		if err := os.MkdirAll(filepath.Join(*state, dir), 0o700); err != nil {
			log.Fatal(err)
		}
	}
	_ = os.Remove(*socket)
	listener, err := net.Listen("unix", *socket)
	if err != nil {
		log.Fatal(err)
	}
	d := &driver{name: *name, state: *state}
	server := grpc.NewServer(grpc.UnaryInterceptor(logCalls))
	csi.RegisterIdentityServer(server, d)
	csi.RegisterControllerServer(server, d)
	go func() {
		signals := make(chan os.Signal, 1)
		signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
		<-signals
		server.Stop()
	}()
	log.Printf("%s serving on %s, state in %s", *name, *socket, *state)
	if err := server.Serve(listener); err != nil {
		log.Fatal(err)
	}
}

func logCalls(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	resp, err := handler(ctx, req)
	if err != nil {
		log.Printf("%s %v: %v", info.FullMethod, req, err)
	} else {
		log.Printf("%s %v: ok", info.FullMethod, req)
	}
	return resp, err
}

// ---- Identity ----------------------------------------------------------------------------------

func (d *driver) GetPluginInfo(context.Context, *csi.GetPluginInfoRequest) (*csi.GetPluginInfoResponse, error) {
	return &csi.GetPluginInfoResponse{Name: d.name, VendorVersion: "0.1.0"}, nil
}

func (d *driver) GetPluginCapabilities(context.Context, *csi.GetPluginCapabilitiesRequest) (*csi.GetPluginCapabilitiesResponse, error) {
	return &csi.GetPluginCapabilitiesResponse{Capabilities: []*csi.PluginCapability{{
		Type: &csi.PluginCapability_Service_{Service: &csi.PluginCapability_Service{
			Type: csi.PluginCapability_Service_CONTROLLER_SERVICE,
		}},
	}}}, nil
}

func (d *driver) Probe(context.Context, *csi.ProbeRequest) (*csi.ProbeResponse, error) {
	return &csi.ProbeResponse{}, nil
}

// ---- Controller --------------------------------------------------------------------------------

func (d *driver) ControllerGetCapabilities(context.Context, *csi.ControllerGetCapabilitiesRequest) (*csi.ControllerGetCapabilitiesResponse, error) {
	var caps []*csi.ControllerServiceCapability
	for _, c := range []csi.ControllerServiceCapability_RPC_Type{
		csi.ControllerServiceCapability_RPC_CREATE_DELETE_VOLUME,
		csi.ControllerServiceCapability_RPC_CREATE_DELETE_SNAPSHOT,
		csi.ControllerServiceCapability_RPC_LIST_SNAPSHOTS,
	} {
		caps = append(caps, &csi.ControllerServiceCapability{
			Type: &csi.ControllerServiceCapability_Rpc{Rpc: &csi.ControllerServiceCapability_RPC{Type: c}},
		})
	}
	return &csi.ControllerGetCapabilitiesResponse{Capabilities: caps}, nil
}

func (d *driver) CreateVolume(_ context.Context, req *csi.CreateVolumeRequest) (*csi.CreateVolumeResponse, error) {
	if !validName.MatchString(req.GetName()) {
		return nil, status.Errorf(codes.InvalidArgument, "volume name %q is not [A-Za-z0-9_-]{1,128}", req.GetName())
	}
	if len(req.GetVolumeCapabilities()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "volume capabilities are required")
	}
	if req.GetVolumeContentSource() != nil {
		return nil, status.Error(codes.InvalidArgument, "this fixture cannot restore volumes from a source")
	}
	capacity := req.GetCapacityRange().GetRequiredBytes()
	if capacity == 0 {
		capacity = defaultCapacity
	}
	if limit := req.GetCapacityRange().GetLimitBytes(); limit != 0 && limit < capacity {
		return nil, status.Errorf(codes.OutOfRange, "capacity %d is above the limit %d", capacity, limit)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	var existing volumeMeta
	if found, err := readJSON(d.volumeMetaPath(req.GetName()), &existing); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	} else if found {
		if existing.CapacityBytes != capacity {
			return nil, status.Errorf(codes.AlreadyExists, "volume %s exists with %d bytes", req.GetName(), existing.CapacityBytes)
		}
	} else {
		if err := os.MkdirAll(d.volumeDir(req.GetName()), 0o750); err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
		if err := writeJSON(d.volumeMetaPath(req.GetName()), volumeMeta{CapacityBytes: capacity}); err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
	}
	return &csi.CreateVolumeResponse{Volume: &csi.Volume{VolumeId: req.GetName(), CapacityBytes: capacity}}, nil
}

func (d *driver) DeleteVolume(_ context.Context, req *csi.DeleteVolumeRequest) (*csi.DeleteVolumeResponse, error) {
	if !validName.MatchString(req.GetVolumeId()) {
		return nil, status.Errorf(codes.InvalidArgument, "volume id %q is not valid", req.GetVolumeId())
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	// The metadata goes first: a volume without it no longer exists, whatever is left of its data.
	if err := os.Remove(d.volumeMetaPath(req.GetVolumeId())); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, status.Error(codes.Internal, err.Error())
	}
	if err := os.RemoveAll(d.volumeDir(req.GetVolumeId())); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &csi.DeleteVolumeResponse{}, nil
}

func (d *driver) ValidateVolumeCapabilities(_ context.Context, req *csi.ValidateVolumeCapabilitiesRequest) (*csi.ValidateVolumeCapabilitiesResponse, error) {
	if !validName.MatchString(req.GetVolumeId()) || len(req.GetVolumeCapabilities()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "a valid volume id and capabilities are required")
	}
	var meta volumeMeta
	if found, err := readJSON(d.volumeMetaPath(req.GetVolumeId()), &meta); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	} else if !found {
		return nil, status.Errorf(codes.NotFound, "volume %s does not exist", req.GetVolumeId())
	}
	return &csi.ValidateVolumeCapabilitiesResponse{Confirmed: &csi.ValidateVolumeCapabilitiesResponse_Confirmed{
		VolumeCapabilities: req.GetVolumeCapabilities(),
	}}, nil
}

func (d *driver) CreateSnapshot(_ context.Context, req *csi.CreateSnapshotRequest) (*csi.CreateSnapshotResponse, error) {
	if !validName.MatchString(req.GetName()) {
		return nil, status.Errorf(codes.InvalidArgument, "snapshot name %q is not [A-Za-z0-9_-]{1,128}", req.GetName())
	}
	if !validName.MatchString(req.GetSourceVolumeId()) {
		return nil, status.Errorf(codes.InvalidArgument, "source volume id %q is not valid", req.GetSourceVolumeId())
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	var existing snapshotMeta
	if found, err := readJSON(d.snapshotMetaPath(req.GetName()), &existing); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	} else if found {
		if existing.SourceVolumeID != req.GetSourceVolumeId() {
			return nil, status.Errorf(codes.AlreadyExists, "snapshot %s exists for volume %s", req.GetName(), existing.SourceVolumeID)
		}
		return &csi.CreateSnapshotResponse{Snapshot: toCSI(req.GetName(), existing)}, nil
	}
	var volume volumeMeta
	if found, err := readJSON(d.volumeMetaPath(req.GetSourceVolumeId()), &volume); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	} else if !found {
		return nil, status.Errorf(codes.NotFound, "volume %s does not exist", req.GetSourceVolumeId())
	}
	tarPath := d.snapshotTarPath(req.GetName())
	if err := tarDirectory(d.volumeDir(req.GetSourceVolumeId()), tarPath+".tmp"); err != nil {
		_ = os.Remove(tarPath + ".tmp")
		return nil, status.Errorf(codes.Internal, "copying volume %s: %v", req.GetSourceVolumeId(), err)
	}
	if err := os.Rename(tarPath+".tmp", tarPath); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	// restoreSize is what a volume restored from it needs: the source volume's capacity.
	meta := snapshotMeta{SourceVolumeID: req.GetSourceVolumeId(), SizeBytes: volume.CapacityBytes, CreationTime: time.Now().UTC()}
	if err := writeJSON(d.snapshotMetaPath(req.GetName()), meta); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &csi.CreateSnapshotResponse{Snapshot: toCSI(req.GetName(), meta)}, nil
}

func (d *driver) DeleteSnapshot(_ context.Context, req *csi.DeleteSnapshotRequest) (*csi.DeleteSnapshotResponse, error) {
	if !validName.MatchString(req.GetSnapshotId()) {
		return nil, status.Errorf(codes.InvalidArgument, "snapshot id %q is not valid", req.GetSnapshotId())
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, path := range []string{d.snapshotMetaPath(req.GetSnapshotId()), d.snapshotTarPath(req.GetSnapshotId())} {
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, status.Error(codes.Internal, err.Error())
		}
	}
	return &csi.DeleteSnapshotResponse{}, nil
}

func (d *driver) ListSnapshots(_ context.Context, req *csi.ListSnapshotsRequest) (*csi.ListSnapshotsResponse, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	paths, err := filepath.Glob(filepath.Join(d.state, "snapshots", "*.json"))
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	sort.Strings(paths)
	var entries []*csi.ListSnapshotsResponse_Entry
	for _, path := range paths {
		id := filepath.Base(path[:len(path)-len(".json")])
		var meta snapshotMeta
		if _, err := readJSON(path, &meta); err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
		if (req.GetSnapshotId() != "" && req.GetSnapshotId() != id) ||
			(req.GetSourceVolumeId() != "" && req.GetSourceVolumeId() != meta.SourceVolumeID) {
			continue
		}
		entries = append(entries, &csi.ListSnapshotsResponse_Entry{Snapshot: toCSI(id, meta)})
	}
	// The token is an offset into the sorted list.
	start := 0
	if req.GetStartingToken() != "" {
		if start, err = strconv.Atoi(req.GetStartingToken()); err != nil || start < 0 || start > len(entries) {
			return nil, status.Errorf(codes.Aborted, "starting token %q is not valid", req.GetStartingToken())
		}
	}
	end, next := len(entries), ""
	if max := int(req.GetMaxEntries()); max > 0 && start+max < len(entries) {
		end, next = start+max, strconv.Itoa(start+max)
	}
	return &csi.ListSnapshotsResponse{Entries: entries[start:end], NextToken: next}, nil
}

// ---- storage -----------------------------------------------------------------------------------

func (d *driver) volumeDir(id string) string { return filepath.Join(d.state, "volumes", id) }
func (d *driver) volumeMetaPath(id string) string {
	return filepath.Join(d.state, "volumes", id+".json")
}
func (d *driver) snapshotTarPath(id string) string {
	return filepath.Join(d.state, "snapshots", id+".tar")
}
func (d *driver) snapshotMetaPath(id string) string {
	return filepath.Join(d.state, "snapshots", id+".json")
}

func toCSI(id string, meta snapshotMeta) *csi.Snapshot {
	return &csi.Snapshot{
		SnapshotId:     id,
		SourceVolumeId: meta.SourceVolumeID,
		SizeBytes:      meta.SizeBytes,
		CreationTime:   timestamppb.New(meta.CreationTime),
		ReadyToUse:     true, // the copy is complete before CreateSnapshot answers
	}
}

// tarDirectory writes the tree under root to a new tar file. Symlinks are stored as links and
// never followed (a volume is written by whoever uses it: a link to /etc/shadow must not copy
// the host's file), and a regular file is opened with O_NOFOLLOW so that one swapped for a link
// after the walk saw it is refused, not followed. Only a regular file's content is read.
func tarDirectory(root, out string) error {
	_ = os.Remove(out) // left by a copy that failed half-way
	f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	err = filepath.WalkDir(root, func(path string, entry fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil || rel == "." {
			return err
		}
		info, err := entry.Info() // lstat: a link is described, not its target
		if err != nil {
			return err
		}
		if info.Mode()&fs.ModeSocket != 0 {
			return nil // tar has no socket type
		}
		link := ""
		if info.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(path); err != nil {
				return err
			}
		}
		header, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		header.Name = filepath.ToSlash(rel)
		if info.IsDir() {
			header.Name += "/"
		}
		if err := tw.WriteHeader(header); err != nil {
			return err
		}
		if !info.Mode().IsRegular() {
			return nil
		}
		return copyFile(tw, path, header.Size)
	})
	if err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return f.Close()
}

// copyFile copies exactly size bytes (the size the header announced) of a regular file.
func copyFile(w io.Writer, path string, size int64) error {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if info, err := f.Stat(); err != nil {
		return err
	} else if !info.Mode().IsRegular() {
		return fmt.Errorf("%s changed into a %v while it was copied", path, info.Mode().Type())
	}
	if _, err := io.CopyN(w, f, size); err != nil {
		return fmt.Errorf("%s: %w (it shrank while it was copied)", path, err)
	}
	return nil
}

func readJSON(path string, v any) (bool, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	} else if err != nil {
		return false, err
	}
	return true, json.Unmarshal(data, v)
}

// writeJSON writes through a rename: a reader never sees half a file.
func writeJSON(path string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if err := os.WriteFile(path+".tmp", data, 0o600); err != nil {
		return err
	}
	return os.Rename(path+".tmp", path)
}
