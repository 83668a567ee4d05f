// Command infinivirtctl is the operator's and the backend's CLI for the agent.
package main

import (
	"os"

	"github.com/infinibay/infinivirt/cli"
)

func main() { os.Exit(cli.Execute()) }
