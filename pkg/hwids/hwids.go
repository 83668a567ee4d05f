// Package hwids reads the hardware id databases of the PCI ID and Linux
// USB ID projects (pci.ids and usb.ids). Both share one line format:
//
//	vendor  vendor_name
//	<TAB>device  device_name
//	<TAB><TAB>subsystem or interface lines
//	C class  class_name
//	<TAB>subclass  subclass_name
//	<TAB><TAB>prog-if  prog-if_name
//
// and further sections (usb.ids has several) that start with a keyword.
// Only vendor, device, class and subclass names are kept. A missing
// database is not an error: lookups then answer "".
package hwids

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Debian's pci.ids and usb.ids packages install the databases here.
const (
	DefaultPCIIDs = "/usr/share/misc/pci.ids"
	DefaultUSBIDs = "/usr/share/misc/usb.ids"
)

// maxLine bounds one line; real lines are well under 200 bytes.
const maxLine = 64 << 10

// DB is a parsed database. The zero value and nil are empty databases.
type DB struct {
	vendors map[uint16]vendor
	classes map[uint8]class
}

type vendor struct {
	name    string
	devices map[uint16]string
}

type class struct {
	name string
	subs map[uint8]string
}

// Vendor is the vendor's name, or "".
func (db *DB) Vendor(v uint16) string {
	if db == nil {
		return ""
	}
	return db.vendors[v].name
}

// Device is the name of the vendor's device, or "".
func (db *DB) Device(v, d uint16) string {
	if db == nil {
		return ""
	}
	return db.vendors[v].devices[d]
}

// Class is the subclass's name, the class's when the subclass has none,
// or "".
func (db *DB) Class(c, sub uint8) string {
	if db == nil {
		return ""
	}
	cl := db.classes[c]
	if n := cl.subs[sub]; n != "" {
		return n
	}
	return cl.name
}

// section is what the indented lines below a top-level line belong to.
type section int

const (
	inNone section = iota
	inVendor
	inClass
)

// Parse reads a database. Lines it does not understand are skipped, as
// the databases grow new sections; only a read error or an overlong line
// fails it.
func Parse(r io.Reader) (*DB, error) {
	db := &DB{vendors: map[uint16]vendor{}, classes: map[uint8]class{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxLine)
	var (
		in  = inNone
		ven uint16
		cls uint8
	)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimRight(sc.Text(), " \t\r")
		if line == "" || strings.HasPrefix(strings.TrimLeft(line, "\t"), "#") {
			continue
		}
		depth := len(line) - len(strings.TrimLeft(line, "\t"))
		body := line[depth:]
		switch depth {
		case 0:
			in = inNone
			if id, name, ok := entry(body, 4); ok {
				in, ven = inVendor, uint16(id)
				db.vendors[ven] = vendor{name: name, devices: db.vendors[ven].devices}
			} else if rest, ok := strings.CutPrefix(body, "C "); ok {
				if id, name, ok := entry(rest, 2); ok {
					in, cls = inClass, uint8(id)
					db.classes[cls] = class{name: name, subs: db.classes[cls].subs}
				}
			}
		case 1:
			switch in {
			case inVendor:
				if id, name, ok := entry(body, 4); ok {
					v := db.vendors[ven]
					v.devices = put(v.devices, uint16(id), name)
					db.vendors[ven] = v
				}
			case inClass:
				if id, name, ok := entry(body, 2); ok {
					c := db.classes[cls]
					c.subs = put(c.subs, uint8(id), name)
					db.classes[cls] = c
				}
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read ids database: %w", err)
	}
	return db, nil
}

// put sets m[k], making m when it is nil.
func put[K comparable](m map[K]string, k K, name string) map[K]string {
	if m == nil {
		m = map[K]string{}
	}
	m[k] = name
	return m
}

// entry splits "hhhh  name": an id of exactly digits hex digits, white
// space, and a name.
func entry(s string, digits int) (id uint64, name string, ok bool) {
	if len(s) <= digits || (s[digits] != ' ' && s[digits] != '\t') {
		return 0, "", false
	}
	id, err := strconv.ParseUint(s[:digits], 16, 16)
	if err != nil {
		return 0, "", false
	}
	name = strings.TrimSpace(s[digits:])
	return id, name, name != ""
}

// File is a database file, parsed again when it changes (a package
// upgrade) and answering as empty while it is missing.
type File struct {
	Path string

	mu      sync.Mutex
	db      *DB
	modTime time.Time
	size    int64
}

// DB returns the file's database: empty when the file is missing, and an
// error when it is there but cannot be read.
func (f *File) DB() (*DB, error) {
	st, err := os.Stat(f.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.db != nil && st.ModTime().Equal(f.modTime) && st.Size() == f.size {
		return f.db, nil
	}
	db, err := Load(f.Path)
	if err != nil {
		return nil, err
	}
	f.db, f.modTime, f.size = db, st.ModTime(), st.Size()
	return db, nil
}

// Load parses the database file at path.
func Load(path string) (*DB, error) {
	r, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	db, err := Parse(r)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return db, nil
}
