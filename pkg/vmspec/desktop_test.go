package vmspec

import "testing"

// A create fixes the platform and the sound card from the OS; audio in the
// request overrides the sound card's default either way, and both reach
// the spec file and the view.
func TestCreateFixesPlatformAndAudio(t *testing.T) {
	no, yes := false, true
	for _, tt := range []struct {
		os       string
		audio    *bool
		platform string
		want     bool
	}{
		{"windows11", nil, PlatformWindows, true},
		{"windows10", &no, PlatformWindows, false},
		{"ubuntu", nil, "", true},
		{"fedora", &no, "", false},
		{"linux", nil, "", false},
		{"linux", &yes, "", true},
	} {
		in := validInput()
		in.OS, in.Audio = tt.os, tt.audio
		s, err := FromCreateInput(in, defaults)
		if err != nil {
			t.Fatalf("%s: %v", tt.os, err)
		}
		if s.Platform != tt.platform || s.Audio != tt.want {
			t.Errorf("%s audio %v: platform %q audio %v, want %q %v", tt.os, tt.audio, s.Platform, s.Audio, tt.platform, tt.want)
		}
		if v := s.View(); v.Platform != tt.platform || v.Audio != tt.want {
			t.Errorf("%s: view platform %q audio %v", tt.os, v.Platform, v.Audio)
		}
	}
}
