//go:build ignore

// gen_openapi writes openapi.json from the route table: go generate.
package main

import (
	"log"
	"os"

	"github.com/infinibay/infinivirt/agent/httpapi"
	"github.com/infinibay/infinivirt/agent/httpapi/internal/openapigen"
)

func main() {
	doc, err := openapigen.Generate(httpapi.Routes(), "../..")
	if err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile("openapi.json", doc, 0o644); err != nil {
		log.Fatal(err)
	}
}
