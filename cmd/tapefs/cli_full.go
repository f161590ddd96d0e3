//go:build !tapefs_lite

package main

// CLI is the whole command line.
type CLI struct {
	Globals

	Mount   MountCmd   `cmd:"" help:"Mount a tape store on a directory. It serves once the store is listed; new and changed tapes are then indexed in the background (tapefs status shows how far), and the views and queries wait for that."`
	Unmount UnmountCmd `cmd:"" help:"Upload pending writes and unmount (also cleans up a mount whose daemon died)."`
	QueryCommands
	Status  StatusCmd  `cmd:"" help:"Show running mounts, pending uploads and store counters."`
	Refresh RefreshCmd `cmd:"" help:"Make a running mount pick up changes in the store now."`
	Import  ImportCmd  `cmd:"" help:"Copy a directory of tapes into a store, skipping what is already there, and index them."`
	Reindex ReindexCmd `cmd:"" help:"Rebuild the sidecar index from the store (resumable; unmount first)."`
}

// handOff is for the query front end; the complete program runs every
// command itself.
func handOff(args []string) {}

// runsElsewhere names the commands another program runs; none here.
func runsElsewhere(command string) bool { return false }

// unknownSetting is what a setting at the top of the config file that names
// no flag is: an error.
func unknownSetting(err error) error { return err }
