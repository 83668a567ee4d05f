package unattended

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"

	"github.com/infinibay/infinivirt/pkg/unattended/sha512crypt"
)

// gen carries what differs between production and golden tests: the source
// of password salts.
type gen struct {
	salt  func() (string, error)
	crypt func(password, setting string) string // nil: sha512crypt.Crypt
}

var defaultGen = gen{salt: sha512crypt.NewSalt}

func (g gen) hashPassword(pw string) (string, error) {
	salt, err := g.salt()
	if err != nil {
		return "", err
	}
	if g.crypt != nil {
		return g.crypt(pw, "$6$"+salt), nil
	}
	return sha512crypt.Crypt(pw, "$6$"+salt), nil
}

// FirstBootDir is where Linux guests keep their first-boot steps.
const FirstBootDir = "/var/lib/infinivirt/firstboot"

// bootStep is one program run at a Linux guest's first boot: an
// application's install command or a first-boot script, in config order.
type bootStep struct {
	path    string   // file in FirstBootDir
	content string   // the file's content
	argv    []string // how to run it
}

var slugRE = regexp.MustCompile(`[^a-z0-9]+`)

// slug turns a display name into a safe file-name part.
func slug(name string) string {
	s := strings.Trim(slugRE.ReplaceAllString(strings.ToLower(name), "-"), "-")
	if len(s) > 40 {
		s = strings.TrimRight(s[:40], "-")
	}
	if s == "" {
		s = "step"
	}
	return s
}

// linuxSteps lists the first-boot steps: applications with a command, then
// scripts. Applications without one are packages, installed elsewhere.
func (c InstallConfig) linuxSteps() []bootStep {
	var steps []bootStep
	n := 0
	next := func(kind, name string) string {
		n++
		return fmt.Sprintf("%s/%02d-%s-%s", FirstBootDir, n, kind, slug(name))
	}
	for _, a := range c.Applications {
		if a.Command == "" {
			continue
		}
		p := next("app", a.Name)
		steps = append(steps, bootStep{path: p, content: "#!/bin/sh\nset -e\n" + a.Command + "\n", argv: []string{p}})
	}
	for _, s := range c.FirstBootScripts {
		p := next("script", s.Name)
		argv := []string{"/bin/sh", p}
		if strings.HasPrefix(s.Content, "#!") {
			argv = []string{p}
		}
		steps = append(steps, bootStep{path: p, content: s.Content, argv: argv})
	}
	return steps
}

// packages lists the applications that are plain package names.
func (c InstallConfig) packages() []string {
	var pkgs []string
	for _, a := range c.Applications {
		if a.Command == "" {
			pkgs = append(pkgs, a.Name)
		}
	}
	return pkgs
}

// instanceID names one generated answer for cloud-init: the same answer gets
// the same id, and a changed one a new id, so cloud-init applies it again.
func instanceID(userData []byte) string {
	sum := sha256.Sum256(userData)
	return "iid-infinivirt-" + hex.EncodeToString(sum[:8])
}
