package logging

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

func sameStream(journalStream string, f *os.File) bool {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return false
	}
	return fmt.Sprintf("%d:%d", st.Dev, st.Ino) == journalStream
}
