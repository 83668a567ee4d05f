package unattended

// UbuntuAutoinstall returns NoCloud user-data and meta-data for the Ubuntu
// 22.04+ live server installer (Subiquity). The autoinstall section holds
// the identity with a SHA-512 crypt hash (never the plain password), locale,
// keyboard, timezone, a whole-disk storage layout, packages for the
// applications that are package names, and "shutdown: poweroff" so the guest
// powers off when the install is done. The installed system's own
// cloud-config (autoinstall.user-data) runs the first-boot steps.
//
// Only the autoinstall key is meant for the installer: top-level cloud-config
// keys would apply to the live installer session, so there are none.
func UbuntuAutoinstall(cfg InstallConfig) (userData, metaData []byte, err error) {
	return defaultGen.ubuntuAutoinstall(cfg)
}

func (g gen) ubuntuAutoinstall(cfg InstallConfig) ([]byte, []byte, error) {
	if err := cfg.Validate(OSUbuntu); err != nil {
		return nil, nil, err
	}
	hash, err := g.hashPassword(cfg.Password)
	if err != nil {
		return nil, nil, err
	}
	ai := ymap{
		{"version", 1},
		{"locale", linuxLocale(cfg.Locale)},
		{"keyboard", ymap{{"layout", cfg.keyboardLayout()}}},
		{"timezone", cfg.Timezone},
		{"identity", ymap{
			{"hostname", cfg.Hostname},
			{"realname", cfg.Username},
			{"username", cfg.Username},
			{"password", hash},
		}},
		{"storage", ymap{{"layout", ymap{{"name", "direct"}}}}},
	}
	if pkgs := cfg.packages(); len(pkgs) > 0 {
		ai = append(ai, ykv{"packages", pkgs})
	}
	if fb := cfg.firstBootCloudConfig(); len(fb) > 0 {
		ai = append(ai, ykv{"user-data", fb})
	}
	ai = append(ai, ykv{"shutdown", "poweroff"})
	ud := cloudConfigBytes(ymap{{"autoinstall", ai}})
	return ud, metaData(cfg.Hostname, ud), nil
}
