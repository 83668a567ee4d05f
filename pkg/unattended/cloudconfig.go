package unattended

import (
	"strings"
)

// CloudOptions tune CloudConfig.
type CloudOptions struct {
	// PowerOff powers the guest off once cloud-init has run everything, as
	// an installer does at its end; the install flow sees that as "installed".
	PowerOff bool
}

// CloudConfig returns NoCloud user-data for a guest that runs cloud-init
// itself, such as a cloud image: hostname, the user with a SHA-512 crypt
// hash and sudo rights, locale, timezone, keyboard, packages, and the
// first-boot steps. It is validated with the Linux rules of OSUbuntu. The
// Ubuntu installer hands the same first-boot part to the installed system
// (see UbuntuAutoinstall).
func CloudConfig(cfg InstallConfig, opts CloudOptions) ([]byte, error) {
	return defaultGen.cloudConfig(cfg, opts)
}

func (g gen) cloudConfig(cfg InstallConfig, opts CloudOptions) ([]byte, error) {
	if err := cfg.Validate(OSUbuntu); err != nil {
		return nil, err
	}
	hash, err := g.hashPassword(cfg.Password)
	if err != nil {
		return nil, err
	}
	doc := ymap{
		{"hostname", cfg.Hostname},
		{"preserve_hostname", false},
		{"locale", linuxLocale(cfg.Locale)},
		{"timezone", cfg.Timezone},
		{"keyboard", ymap{{"layout", cfg.keyboardLayout()}}},
		{"users", []any{ymap{
			{"name", cfg.Username},
			{"gecos", cfg.Username},
			{"shell", "/bin/bash"},
			{"sudo", "ALL=(ALL:ALL) ALL"},
			{"lock_passwd", false},
			{"hashed_passwd", hash},
		}}},
	}
	if pkgs := cfg.packages(); len(pkgs) > 0 {
		doc = append(doc, ykv{"packages", pkgs})
	}
	doc = append(doc, cfg.firstBootCloudConfig()...)
	if opts.PowerOff {
		doc = append(doc, ykv{"power_state", ymap{{"mode", "poweroff"}, {"condition", true}}})
	}
	return cloudConfigBytes(doc), nil
}

// firstBootCloudConfig is the cloud-config that runs the first-boot steps:
// write_files puts each step in FirstBootDir, runcmd runs them in order.
func (c InstallConfig) firstBootCloudConfig() ymap {
	steps := c.linuxSteps()
	if len(steps) == 0 {
		return nil
	}
	files := make([]any, len(steps))
	cmds := make([]any, len(steps))
	for i, s := range steps {
		files[i] = ymap{{"path", s.path}, {"owner", "root:root"}, {"permissions", "0700"}, {"content", s.content}}
		cmds[i] = s.argv
	}
	return ymap{{"write_files", files}, {"runcmd", cmds}}
}

func cloudConfigBytes(doc ymap) []byte {
	var sb strings.Builder
	sb.WriteString("#cloud-config\n")
	emitYAML(&sb, doc)
	return []byte(sb.String())
}

// metaData is the NoCloud meta-data for user-data.
func metaData(hostname string, userData []byte) []byte {
	var sb strings.Builder
	emitYAML(&sb, ymap{{"instance-id", instanceID(userData)}, {"local-hostname", hostname}})
	return []byte(sb.String())
}
