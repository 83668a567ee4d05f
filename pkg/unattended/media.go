package unattended

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/isoimage"
)

// Volume labels the installers look for.
const (
	LabelNoCloud = "CIDATA"   // cloud-init's NoCloud datasource (Ubuntu)
	LabelOEMDRV  = "OEMDRV"   // Anaconda loads ks.cfg from it (Fedora)
	LabelWindows = "UNATTEND" // any label: Setup searches every removable medium
)

// Options tune the answer media beyond the InstallConfig.
type Options struct {
	// Windows tunes autounattend.xml; its Edition follows the OS name when 0.
	Windows WindowsOptions
}

// AnswerFiles returns the volume label and the files of the answer medium
// for os: user-data and meta-data for Ubuntu, ks.cfg for Fedora,
// autounattend.xml and the first-boot scripts for Windows, all at the root.
func AnswerFiles(os string, cfg InstallConfig, opts Options) (label string, files []isoimage.File, err error) {
	return defaultGen.answerFiles(os, cfg, opts)
}

func (g gen) answerFiles(os string, cfg InstallConfig, opts Options) (string, []isoimage.File, error) {
	if err := cfg.Validate(os); err != nil {
		return "", nil, err
	}
	switch os {
	case OSUbuntu:
		ud, md, err := g.ubuntuAutoinstall(cfg)
		if err != nil {
			return "", nil, err
		}
		return LabelNoCloud, []isoimage.File{{Path: "user-data", Data: ud}, {Path: "meta-data", Data: md}}, nil
	case OSFedora:
		ks, err := g.fedoraKickstart(cfg)
		if err != nil {
			return "", nil, err
		}
		return LabelOEMDRV, []isoimage.File{{Path: "ks.cfg", Data: ks}}, nil
	default: // Windows; Validate refused anything else
		wo := opts.Windows
		want := 10
		if os == OSWindows11 {
			want = 11
		}
		if wo.Edition == 0 {
			wo.Edition = want
		}
		if wo.Edition != want {
			return "", nil, errdefs.Invalid("edition", "Windows edition %d does not match os %s", wo.Edition, os)
		}
		files, err := windowsAnswerFiles(cfg, wo)
		if err != nil {
			return "", nil, err
		}
		return LabelWindows, files, nil
	}
}

// BuildAnswerISO validates cfg for os and writes its answer ISO (Rock Ridge
// and Joliet, mode 0600) at dstPath, replacing it atomically. On any error
// nothing is created. The directory of dstPath must exist.
func BuildAnswerISO(ctx context.Context, os string, cfg InstallConfig, dstPath string) error {
	return BuildAnswerISOWithOptions(ctx, os, cfg, dstPath, Options{})
}

// BuildAnswerISOWithOptions is BuildAnswerISO with Options.
func BuildAnswerISOWithOptions(ctx context.Context, osName string, cfg InstallConfig, dstPath string, opts Options) error {
	label, files, err := AnswerFiles(osName, cfg, opts)
	if err != nil {
		return err
	}
	return writeMedium(ctx, dstPath, label, files, "answer ISO for "+osName)
}

// writeMedium writes an answer medium at dstPath, whose directory must exist.
func writeMedium(ctx context.Context, dstPath, label string, files []isoimage.File, what string) error {
	if fi, err := os.Stat(filepath.Dir(dstPath)); err != nil || !fi.IsDir() {
		return errdefs.NotFound("directory for the answer ISO %s does not exist", filepath.Dir(dstPath))
	}
	if err := isoimage.Write(ctx, dstPath, isoimage.Options{Label: label}, files); err != nil {
		return fmt.Errorf("unattended: %s: %w", what, err)
	}
	return nil
}

// BuildCloudConfigISO writes a CIDATA ISO with CloudConfig's user-data and
// its meta-data, for guests that run cloud-init themselves (cloud images).
// Like BuildAnswerISO it validates first and creates nothing on error.
func BuildCloudConfigISO(ctx context.Context, cfg InstallConfig, opts CloudOptions, dstPath string) error {
	ud, err := CloudConfig(cfg, opts)
	if err != nil {
		return err
	}
	files := []isoimage.File{{Path: "user-data", Data: ud}, {Path: "meta-data", Data: metaData(cfg.Hostname, ud)}}
	return writeMedium(ctx, dstPath, LabelNoCloud, files, "cloud-config ISO")
}
