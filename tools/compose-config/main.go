// compose-config loads Compose files with compose-go, the loader Docker Compose itself
// uses, as `docker compose config` would: the compose specification's schema, then
// interpolation, merging of several files, extension fields and the references between
// services, networks and volumes. No Docker engine is needed.
//
//	go run ./tools/compose-config deploy/docker-compose.yml [more files merged on top]
package main

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/compose-spec/compose-go/v2/cli"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: compose-config FILE [FILE...]")
		os.Exit(2)
	}
	files := os.Args[1:]
	options, err := cli.NewProjectOptions(files, cli.WithOsEnv, cli.WithName("civitas"))
	if err == nil {
		var project interface{ ServiceNames() []string }
		project, err = options.LoadProject(context.Background())
		if err == nil {
			names := project.ServiceNames()
			sort.Strings(names)
			fmt.Printf("%s: valid (%d services: %s)\n",
				strings.Join(files, " + "), len(names), strings.Join(names, ", "))
			return
		}
	}
	fmt.Fprintf(os.Stderr, "%s: %v\n", strings.Join(files, " + "), err)
	os.Exit(1)
}
