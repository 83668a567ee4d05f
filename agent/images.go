package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/device"
	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/imagestore"
	"github.com/infinibay/infinivirt/pkg/logging"
	"github.com/infinibay/infinivirt/pkg/qcow2"
	"github.com/infinibay/infinivirt/pkg/qemuimg"
	"github.com/infinibay/infinivirt/pkg/vmspec"
)

// The image store: golden images that disks are cloned from. An import
// (or a capture of a VM's disk) runs in the background: the call answers
// at once with the image importing and its progress, which GET
// /v1/images/{image} follows, or waits for the end when asked to. An
// image is deleted only while no disk is backed by it.

// imageCheckTimeout bounds the qemu-img calls that check a request.
const imageCheckTimeout = time.Minute

// images is the agent's state about the store.
type images struct {
	// clone is held while a disk is made from an image, and while an
	// image is deleted, so that no clone of an image being deleted is made.
	clone sync.Mutex

	mu   sync.Mutex
	jobs map[string]*imageJob // imports under way or failed, by name
}

// imageJob is an import under way, or one that failed (kept to say why
// until the name is imported again or deleted).
type imageJob struct {
	view api.Image
	done chan struct{} // closed at the end
	err  error
}

func (a *Agent) imageStore() *imagestore.Store {
	return &imagestore.Store{Dir: a.cfg.Layout.ImagesDir(), Tool: &qemuimg.Tool{Binary: a.cfg.QEMUImg}}
}

// initImages makes the store's directory and removes what imports an
// agent crash interrupted.
func (a *Agent) initImages() error { return a.imageStore().Init() }

// ImportImage converts the file req names into the store. It answers once
// the request is checked and the import began, with the image importing;
// with wait, once the import ended.
func (a *Agent) ImportImage(ctx context.Context, req api.ImportImageRequest, wait bool) (api.Image, error) {
	if err := imagestore.CheckName("name", req.Name); err != nil {
		return api.Image{}, err
	}
	src, err := a.checkImageSource(req.SourcePath)
	if err != nil {
		return api.Image{}, err
	}
	format := req.Format
	if format == "" {
		if format, err = qemuimg.SniffFormat(src); err != nil {
			return api.Image{}, errdefs.Invalid("sourcePath", "%v", err)
		}
	} else if err := qemuimg.CheckImportFormat("format", format); err != nil {
		return api.Image{}, err
	}
	cctx, cancel := context.WithTimeout(ctx, imageCheckTimeout)
	defer cancel()
	info, err := (&qemuimg.Tool{Binary: a.cfg.QEMUImg}).InspectSource(cctx, src, format)
	if err != nil {
		return api.Image{}, err
	}
	job, err := a.startImageJob(ctx, req.Name, req.SourcePath, info.VirtualSize, func(ctx context.Context, progress func(float64)) error {
		return a.imageStore().Add(ctx, req.Name, src, format, progress)
	}, nil)
	if err != nil {
		return api.Image{}, err
	}
	a.log.Info("image import started", "IMAGE", req.Name, "SOURCE", req.SourcePath, "FORMAT", format)
	return a.answerImageJob(ctx, job, wait)
}

// checkImageSource checks an import's source: an absolute path to a
// regular file, outside the state directory (a VM's disk becomes an image
// by a capture, which checks that the VM is off). It returns the path with
// its links resolved, which is what is converted.
func (a *Agent) checkImageSource(p string) (string, error) {
	if !filepath.IsAbs(p) || strings.ContainsRune(p, 0) {
		return "", errdefs.Invalid("sourcePath", "must be an absolute path, got %q", p)
	}
	resolved, err := filepath.EvalSymlinks(p)
	if err != nil {
		return "", errdefs.Invalid("sourcePath", "%s: %v", p, errors.Unwrap(err))
	}
	st, err := os.Stat(resolved)
	if err != nil {
		return "", errdefs.Invalid("sourcePath", "%s: %v", p, errors.Unwrap(err))
	}
	if !st.Mode().IsRegular() {
		return "", errdefs.Invalid("sourcePath", "%s is not a regular file", p)
	}
	if state, err := filepath.EvalSymlinks(a.cfg.Layout.StateDir); err == nil {
		if rel, err := filepath.Rel(state, resolved); err == nil && rel != ".." && !strings.HasPrefix(rel, "../") {
			return "", errdefs.Invalid("sourcePath", "%s lies in the state directory %s; turn a VM's disk into an image with POST /v1/vms/{id}/disks/{disk}/image", p, a.cfg.Layout.StateDir)
		}
	}
	return resolved, nil
}

// startImageJob claims name and runs fill in the background; then runs
// after (if not nil) with fill's result. The job outlives the request
// that started it, not the agent.
func (a *Agent) startImageJob(ctx context.Context, name, source string, size int64,
	fill func(context.Context, func(float64)) error, after func(context.Context, error)) (*imageJob, error) {
	a.img.mu.Lock()
	defer a.img.mu.Unlock()
	if j, ok := a.img.jobs[name]; ok && j.view.State == api.ImageImporting {
		return nil, errdefs.AlreadyExists("name", "image %s is being imported", name)
	}
	if a.imageStore().Exists(name) {
		return nil, errdefs.AlreadyExists("name", "image %s already exists", name)
	}
	job := &imageJob{
		view: api.Image{Name: name, State: api.ImageImporting, Format: imagestore.Format, Source: source,
			VirtualSizeBytes: size, CreatedAt: time.Now().UTC().Truncate(time.Second), UsedBy: []api.ImageUser{}},
		done: make(chan struct{}),
	}
	if a.img.jobs == nil {
		a.img.jobs = map[string]*imageJob{}
	}
	a.img.jobs[name] = job
	jctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	if a.ctx != nil { // an agent that stops ends its imports
		go func() {
			select {
			case <-a.ctx.Done():
				cancel()
			case <-jctx.Done():
			}
		}()
	}
	go func() {
		defer cancel()
		err := fill(jctx, func(p float64) {
			a.img.mu.Lock()
			job.view.Progress = p
			a.img.mu.Unlock()
		})
		a.img.mu.Lock()
		job.err = err
		if err != nil {
			job.view.State, job.view.Error = api.ImageFailed, err.Error()
		} else {
			delete(a.img.jobs, name) // the store has it now
		}
		a.img.mu.Unlock()
		if err != nil {
			a.log.Warn("image import failed", "IMAGE", name, "ERROR", err.Error())
		} else {
			a.log.Info("image imported", "IMAGE", name, "SOURCE", source)
		}
		if after != nil {
			after(jctx, err)
		}
		close(job.done)
	}()
	return job, nil
}

// answerImageJob is the image as the job has it now or, with wait, once it ended.
func (a *Agent) answerImageJob(ctx context.Context, job *imageJob, wait bool) (api.Image, error) {
	if !wait {
		a.img.mu.Lock()
		defer a.img.mu.Unlock()
		return job.view, nil
	}
	select {
	case <-job.done:
	case <-ctx.Done():
		return api.Image{}, errdefs.DeadlineExceeded("image %s is still being imported: %v", job.view.Name, ctx.Err())
	}
	if job.err != nil {
		if e := errdefs.As(job.err); e != nil {
			return api.Image{}, job.err
		}
		return api.Image{}, errdefs.Internal("import image %s: %v", job.view.Name, job.err)
	}
	return a.Image(ctx, job.view.Name)
}

// Images lists the store's images with the disks backed by each, and the
// imports under way or failed.
func (a *Agent) Images(ctx context.Context) (api.Images, error) {
	// Jobs first: one that ends meanwhile is then in the store's list.
	var jobs []api.Image
	a.img.mu.Lock()
	for _, j := range a.img.jobs {
		jobs = append(jobs, j.view)
	}
	a.img.mu.Unlock()
	list, err := a.imageStore().List(ctx)
	if err != nil {
		return api.Images{}, errdefs.Internal("list images: %v", err)
	}
	users := a.imageUsers()
	out := api.Images{Images: []api.Image{}}
	stored := map[string]bool{}
	for _, img := range list {
		out.Images = append(out.Images, readyImage(img, users[img.Name]))
		stored[img.Name] = true
	}
	for _, j := range jobs {
		if !stored[j.Name] {
			out.Images = append(out.Images, j)
		}
	}
	sort.Slice(out.Images, func(i, j int) bool { return out.Images[i].Name < out.Images[j].Name })
	return out, nil
}

// Image is one image of the store, or one being imported.
func (a *Agent) Image(ctx context.Context, name string) (api.Image, error) {
	if err := imagestore.CheckName("image", name); err != nil {
		return api.Image{}, err
	}
	a.img.mu.Lock()
	if j, ok := a.img.jobs[name]; ok {
		defer a.img.mu.Unlock()
		return j.view, nil
	}
	a.img.mu.Unlock()
	img, err := a.imageStore().Get(ctx, name)
	if err != nil {
		if e := errdefs.As(err); e != nil {
			e.Field = "image"
			return api.Image{}, e
		}
		return api.Image{}, errdefs.Internal("image %s: %v", name, err)
	}
	return readyImage(img, a.imageUsers()[name]), nil
}

func readyImage(img imagestore.Image, users []api.ImageUser) api.Image {
	if users == nil {
		users = []api.ImageUser{}
	}
	return api.Image{Name: img.Name, State: api.ImageReady, Format: imagestore.Format, Progress: 100,
		VirtualSizeBytes: img.VirtualSizeBytes, AllocatedBytes: img.AllocatedBytes, CreatedAt: img.CreatedAt, UsedBy: users}
}

// imageUsers are the disks backed by each image (linked clones), of every
// VM the agent holds, those being created included.
func (a *Agent) imageUsers() map[string][]api.ImageUser {
	out := map[string][]api.ImageUser{}
	for _, s := range a.allSpecs() {
		for _, d := range s.Disks() {
			if d.Disk.Image != "" && d.Disk.Clone == api.CloneLinked {
				out[d.Disk.Image] = append(out[d.Disk.Image], api.ImageUser{VMID: s.ID, VMName: s.Name, Disk: d.Name})
			}
		}
	}
	return out
}

// DeleteImage removes an image from the store, refused while any disk is
// backed by it. A failed import's record goes too.
func (a *Agent) DeleteImage(ctx context.Context, name string) error {
	if err := imagestore.CheckName("image", name); err != nil {
		return err
	}
	a.img.mu.Lock()
	if j, ok := a.img.jobs[name]; ok {
		defer a.img.mu.Unlock()
		if j.view.State == api.ImageImporting {
			return errdefs.FailedPrecondition("image %s is being imported (%.0f%%); delete it once that ended", name, j.view.Progress)
		}
		delete(a.img.jobs, name)
		return nil
	}
	a.img.mu.Unlock()
	a.img.clone.Lock()
	defer a.img.clone.Unlock()
	if users := a.imageUsers()[name]; len(users) > 0 {
		var vms []string
		for _, u := range users {
			vms = append(vms, fmt.Sprintf("%s (%s, disk %s)", u.VMID, u.VMName, u.Disk))
		}
		return errdefs.FailedPrecondition("image %s backs the disks of %d VMs, which must be deleted first: %s",
			name, len(users), strings.Join(vms, ", "))
	}
	if err := a.imageStore().Delete(name); err != nil {
		if e := errdefs.As(err); e != nil {
			e.Field = "image"
			return e
		}
		return errdefs.Internal("delete image %s: %v", name, err)
	}
	a.log.Info("image deleted", "IMAGE", name)
	return nil
}

// checkDiskImages checks the store images a create's disks are made
// from: each exists and is no larger than its disk. Errors name the
// request's fields (diskImage, diskSizeGB).
func (a *Agent) checkDiskImages(ctx context.Context, in api.CreateVMInput, spec *vmspec.Spec) error {
	ctx, cancel := context.WithTimeout(ctx, imageCheckTimeout)
	defer cancel()
	for i, d := range spec.Devices {
		if d.Type != api.DeviceDisk || d.Disk.Image == "" {
			continue
		}
		field := func(f string) string { return vmspec.CreateInputField(in, fmt.Sprintf("devices[%d].disk.%s", i, f)) }
		img, err := a.imageStore().Get(ctx, d.Disk.Image)
		if err != nil {
			if e := errdefs.As(err); e != nil && e.Code == errdefs.CodeNotFound {
				return errdefs.Invalid(field("image"), "no image %q in the store (GET /v1/images lists them)", d.Disk.Image)
			}
			return errdefs.Internal("image %s: %v", d.Disk.Image, err)
		}
		if d.Disk.SizeBytes < img.VirtualSizeBytes {
			return errdefs.Invalid(field("sizeBytes"), "the disk (%d bytes) must be at least as large as image %s (%d bytes)",
				d.Disk.SizeBytes, d.Disk.Image, img.VirtualSizeBytes)
		}
	}
	return nil
}

// fromImage makes a disk to add a clone of the store image req names,
// checked as a create checks diskImage (errors name image, clone, sizeGB).
func (a *Agent) fromImage(ctx context.Context, d *vmspec.Disk, req api.AddDiskRequest) error {
	if err := imagestore.CheckName("image", req.Image); err != nil {
		return err
	}
	d.Image, d.Clone = req.Image, req.Clone
	if d.Clone == "" {
		d.Clone = api.CloneLinked
	}
	if d.Clone != api.CloneLinked && d.Clone != api.CloneFull {
		return errdefs.Invalid("clone", "must be %q or %q, got %q", api.CloneLinked, api.CloneFull, d.Clone)
	}
	ctx, cancel := context.WithTimeout(ctx, imageCheckTimeout)
	defer cancel()
	img, err := a.imageStore().Get(ctx, req.Image)
	if e := errdefs.As(err); e != nil && e.Code == errdefs.CodeNotFound {
		return errdefs.Invalid("image", "no image %q in the store (GET /v1/images lists them)", req.Image)
	}
	if err != nil {
		return errdefs.Internal("image %s: %v", req.Image, err)
	}
	if d.SizeBytes < img.VirtualSizeBytes {
		return errdefs.Invalid("sizeGB", "the disk (%d bytes) must be at least as large as image %s (%d bytes)", d.SizeBytes, req.Image, img.VirtualSizeBytes)
	}
	return nil
}

// makeDisk creates a disk's image: empty and thin, or from a store image
// as a linked clone (a thin qcow2 overlay) or a full copy. For the latter
// the caller holds a.img.clone until the VM's spec shows the disk.
func (a *Agent) makeDisk(ctx context.Context, d *vmspec.Disk) error {
	switch {
	case d.Image == "" && d.Format == qemuimg.FormatQCOW2:
		// Written in Go: a qemu-img run would cost more than the file.
		return qcow2.Create(d.Path, qcow2.Image{SizeBytes: d.SizeBytes})
	case d.Image == "":
		ctx, cancel := context.WithTimeout(ctx, diskCreateTimeout)
		defer cancel()
		return (&qemuimg.Tool{Binary: a.cfg.QEMUImg}).Create(ctx, d.Path, d.Format, d.SizeBytes)
	}
	st := a.imageStore()
	if d.Clone == api.CloneLinked {
		return st.LinkedClone(d.Image, d.Path, d.SizeBytes)
	}
	// A copy takes as long as the image is large: the deadline is the
	// convert's own (qemuimg.DefaultConvertTimeout).
	return st.FullClone(ctx, d.Image, d.Path, d.Format, d.SizeBytes)
}

// CaptureDiskImage turns the disk of a VM that is off into a new store
// image, flattened (a linked clone's backing image is copied in). The VM
// stays locked, so it cannot boot, until the copy ended. It answers as
// ImportImage does.
func (a *Agent) CaptureDiskImage(ctx context.Context, id, disk, name string, wait bool) (api.Image, error) {
	rec, err := a.get(id)
	if err != nil {
		return api.Image{}, err
	}
	if err := imagestore.CheckName("name", name); err != nil {
		return api.Image{}, err
	}
	unlock, err := a.lockRecord(ctx, rec)
	if err != nil {
		return api.Image{}, err
	}
	keep := false
	defer func() {
		if !keep {
			unlock()
		}
	}()
	spec := rec.currentSpec()
	d, err := specDisk(spec, disk)
	if err != nil {
		return api.Image{}, err
	}
	if st := rec.currentStatus(); !st.Terminal() {
		return api.Image{}, errdefs.FailedPrecondition("VM %s is %s: a disk becomes an image only while its VM is off", id, st)
	}
	cctx, cancel := context.WithTimeout(ctx, imageCheckTimeout)
	defer cancel()
	roots := device.ChainRoots(a.cfg.Layout.VMDir(id), a.cfg.Layout.ImagesDir(), *d.Disk)
	chain, err := (&qemuimg.Tool{Binary: a.cfg.QEMUImg}).CheckChainIn(cctx, d.Disk.Path, d.Disk.Format, roots)
	if err != nil {
		return api.Image{}, errdefs.Internal("disk %s: %v", disk, err)
	}
	src, format := d.Disk.Path, d.Disk.Format
	job, err := a.startImageJob(ctx, name, fmt.Sprintf("vm %s disk %s", id, disk), chain[0].VirtualSize,
		func(ctx context.Context, progress func(float64)) error {
			return a.imageStore().Add(ctx, name, src, format, progress)
		},
		func(ctx context.Context, err error) {
			defer unlock()
			if err != nil {
				return
			}
			msg := fmt.Sprintf("disk %s copied into image %s", disk, name)
			if err := a.appendEvent(ctx, rec, api.Event{Type: api.EventProgress, Message: msg}); err != nil {
				a.log.Warn("cannot record an image capture", logging.KeyVM, id, "ERROR", err.Error())
			}
			a.sync.Resync(id)
		})
	if err != nil {
		return api.Image{}, err
	}
	keep = true // the job lets the VM go when it ends
	a.log.Info("disk capture started", logging.KeyVM, id, "DISK", disk, "IMAGE", name)
	return a.answerImageJob(ctx, job, wait)
}
