// Command validate checks deploy/docker offline with Docker's own libraries: no Docker engine runs
// where the tests do (tests/deploy/test_manifests.py).
//
//	validate compose FILE
//	    Loads FILE as `docker compose config` does (compose-go: the Compose Specification's schema,
//	    interpolation from this process's environment, anchors and merge keys, consistency of
//	    depends_on, volumes and secrets) and prints the resolved project as JSON; errors exit 1.
//	validate dockerignore FILE PATH...
//	    Reads FILE as BuildKit reads .dockerignore (moby/patternmatcher) and prints, for each
//	    slash-separated PATH relative to the build context, whether it is left out of the context.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
)

func compose(file string) error {
	options, err := cli.NewProjectOptions(
		[]string{file},
		cli.WithWorkingDirectory(filepath.Dir(file)),
		cli.WithOsEnv,
		cli.WithResolvedPaths(true),
	)
	if err != nil {
		return err
	}
	project, err := options.LoadProject(context.Background())
	if err != nil {
		return err
	}
	out, err := project.MarshalJSON()
	if err != nil {
		return err
	}
	_, err = os.Stdout.Write(append(out, '\n'))
	return err
}

func dockerignore(file string, paths []string) error {
	reader, err := os.Open(file)
	if err != nil {
		return err
	}
	defer reader.Close()
	patterns, err := ignorefile.ReadAll(reader)
	if err != nil {
		return err
	}
	matcher, err := patternmatcher.New(patterns)
	if err != nil {
		return err
	}
	excluded := make(map[string]bool, len(paths))
	for _, path := range paths {
		if excluded[path], err = matcher.MatchesOrParentMatches(path); err != nil {
			return err
		}
	}
	return json.NewEncoder(os.Stdout).Encode(map[string]any{"patterns": patterns, "excluded": excluded})
}

func main() {
	var err error
	switch {
	case len(os.Args) == 3 && os.Args[1] == "compose":
		err = compose(os.Args[2])
	case len(os.Args) >= 3 && os.Args[1] == "dockerignore":
		err = dockerignore(os.Args[2], os.Args[3:])
	default:
		err = fmt.Errorf("usage: validate compose FILE | validate dockerignore FILE PATH")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
