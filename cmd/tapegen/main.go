// Command tapegen writes a deterministic corpus of Shadowcat tapes into a
// directory, for benchmarks and manual tests of tapefs.
//
//	tapegen -out DIR -seed 1 -v2 2000 -v1 10 -large 200MiB -nested
//
// The same flags always write the same bytes. -manifest FILE also writes
// the list of keys with their kinds and expected index records as JSON.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/tapefs/tapefs/internal/tapegen"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "tapegen:", err)
		}
		os.Exit(2)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("tapegen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		c        tapegen.CorpusOptions
		out      = fs.String("out", "", "directory to write the corpus into (required)")
		large    = fs.String("large", "0", "size of one large tape, e.g. 200MiB (0: none)")
		manifest = fs.String("manifest", "", "write the manifest as JSON to this file (- for stdout)")
	)
	fs.Int64Var(&c.Seed, "seed", 1, "seed: the same seed writes the same bytes")
	fs.IntVar(&c.V2, "v2", 100, "v2 tapes with a .meta.json")
	fs.IntVar(&c.V2NoMeta, "v2-nometa", 0, "v2 tapes without a .meta.json")
	fs.IntVar(&c.V1, "v1", 0, "v1 tapes under v1/ with an index.json")
	fs.BoolVar(&c.Nested, "nested", false, "put v2 tapes under team-x/YYYY/MM/")
	fs.BoolVar(&c.Odd, "odd", false, "add odd files: invalid, empty and non-tape files")
	fs.BoolVar(&c.OddNames, "odd-names", false, "add tapes with spaces, unicode, %, #, ?, \\ and : in their names")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" || fs.NArg() > 0 {
		fs.Usage()
		return errors.New("-out is required and no arguments are taken")
	}
	size, err := parseSize(*large)
	if err != nil {
		return fmt.Errorf("-large: %w", err)
	}
	c.Large = size

	start := time.Now()
	m, err := tapegen.WriteCorpus(*out, c)
	if err != nil {
		return err
	}
	var total int64
	for _, f := range m.Files {
		total += f.Size
	}
	fmt.Fprintf(stdout, "wrote %d files, %d tapes, %d bytes to %s in %v\n",
		len(m.Files), len(m.Tapes()), total, *out, time.Since(start).Round(time.Millisecond))
	if *manifest == "" {
		return nil
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	if *manifest == "-" {
		_, err = stdout.Write(append(b, '\n'))
		return err
	}
	return os.WriteFile(*manifest, append(b, '\n'), 0o644)
}

// parseSize reads a byte count with an optional unit: 123, 64KiB, 200MiB,
// 1GiB, or the decimal KB, MB, GB.
func parseSize(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"B", 1}}
	num, mult := strings.TrimSpace(s), int64(1)
	for _, u := range units {
		if n, ok := strings.CutSuffix(num, u.suffix); ok {
			num, mult = strings.TrimSpace(n), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("bad size %q", s)
	}
	return n * mult, nil
}
