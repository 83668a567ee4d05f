// Command infinivirt-testguest builds (once, cached) the tiny test guest
// and prints its kernel and initrd paths, one per line, for the demo and
// for operators trying Infinivirt without an OS image.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/infinibay/infinivirt/pkg/testbed/guest"
)

func main() {
	cache := flag.String("cache", "", "cache directory (default: .cache/testguest at the repository root, or $"+guest.CacheEnv+")")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), guest.BuildTimeout)
	defer cancel()
	img, err := guest.Ensure(ctx, *cache)
	if err != nil {
		fmt.Fprintln(os.Stderr, "infinivirt-testguest:", err)
		os.Exit(1)
	}
	fmt.Println(img.Kernel)
	fmt.Println(img.Initrd)
}
