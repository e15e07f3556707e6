package localstack

import (
	"archive/tar"
	"archive/zip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kchat/kchat/pkg/devcert"
	"github.com/ulikunitz/xz"
)

// pgHome is where the PostgreSQL binaries and data live. PostgreSQL refuses to run as
// root, so as root it runs as "nobody", which must be able to reach the directory: the
// repository may sit below a private home, so root uses a directory under /tmp instead.
func (s *Stack) pgHome() string {
	if os.Geteuid() != 0 {
		return filepath.Join(s.cfg.StateDir, "postgres")
	}
	sum := sha256.Sum256([]byte(s.cfg.StateDir))
	return filepath.Join(os.TempDir(), "kchat-postgres-"+hex.EncodeToString(sum[:6]))
}

func (s *Stack) pgData() string { return filepath.Join(s.pgHome(), "data") }

func (s *Stack) upPostgres(ctx context.Context) error {
	if _, ok := s.running("postgres"); !ok {
		if err := checkPortFree(s.cfg.PostgresPort, "postgres"); err != nil {
			return err
		}
		bin, err := s.postgresBinaries(ctx)
		if err != nil {
			return err
		}
		if err := s.initdb(ctx, bin); err != nil {
			return err
		}
		if err := s.writePostgresCertificates(); err != nil {
			return err
		}
		s.log.Info("starting", "process", "postgres", "port", s.cfg.PostgresPort, "bin", bin)
		cmd := exec.Command(filepath.Join(bin, "postgres"), "-D", s.pgData(),
			"-p", strconv.Itoa(s.cfg.PostgresPort),
			"-c", "listen_addresses=127.0.0.1",
			"-c", "unix_socket_directories=",
			"-c", "max_connections=300",
			// Throwaway dev/test data: no fsync, so a machine crash may lose data. Commits
			// still reach the WAL in the OS cache before they are acknowledged
			// (synchronous_commit=on), so killing the server process loses nothing that was
			// acknowledged: with it off, a crash once lost 3 of 817 acknowledged messages
			// and handed out seqs twice (docs/reliability.md, finding 3).
			"-c", "fsync=off", "-c", "full_page_writes=off", "-c", "synchronous_commit=on",
			"-c", "shared_buffers=128MB",
			// The data lives in memory; the default 4 made the planner read small tables
			// whole rather than look up a few rows (docs/operations.md, "PostgreSQL").
			"-c", "random_page_cost=1.1",
			// TLS on, not required: the stack's own URLs say sslmode=disable, and
			// sslmode=verify-full against PostgresCAFile works as it would in production.
			"-c", "ssl=on", "-c", "ssl_cert_file=server.crt", "-c", "ssl_key_file=server.key",
			"-c", "cluster_name="+s.cfg.StateDir)
		if err := s.asPostgresUser(cmd); err != nil {
			return err
		}
		if err := s.spawn("postgres", cmd, s.cfg.StateDir); err != nil {
			return err
		}
	}
	return waitFor(ctx, time.Minute, "PostgreSQL to accept connections", func() error {
		if _, ok := s.running("postgres"); !ok {
			return fmt.Errorf("postgres exited; see %s", s.logFile("postgres"))
		}
		conn, err := pgx.Connect(ctx, s.DatabaseURLFor("postgres"))
		if err != nil {
			return err
		}
		return conn.Close(ctx)
	})
}

// writePostgresCertificates gives the server, once per data directory, a certificate
// for localhost and 127.0.0.1 signed by a CA of its own, kept beside it so that clients'
// sslrootcert stays valid across restarts.
func (s *Stack) writePostgresCertificates() error {
	if _, err := os.Stat(filepath.Join(s.pgData(), "server.key")); err == nil {
		return nil
	}
	ca, err := devcert.NewCA("kchat localstack PostgreSQL CA")
	if err != nil {
		return err
	}
	leaf, err := ca.Issue("kchat localstack PostgreSQL", []string{"localhost", "127.0.0.1"}, time.Now().AddDate(1, 0, 0))
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(s.postgresCAFile()), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(s.postgresCAFile(), ca.PEM(), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(s.pgData(), "server.crt"), leaf.CertPEM, 0o644); err != nil {
		return err
	}
	// PostgreSQL refuses a key others can read; written last, its presence means done.
	return os.WriteFile(filepath.Join(s.pgData(), "server.key"), leaf.KeyPEM, 0o600)
}

func (s *Stack) postgresCAFile() string {
	return filepath.Join(s.cfg.StateDir, "postgres-tls", "ca.pem")
}

// postgresBinaries returns a bin directory: zonky's relocatable build fetched from Maven
// Central (no root, no apt), else a Debian postgresql package if one is installed.
func (s *Stack) postgresBinaries(ctx context.Context) (string, error) {
	install := filepath.Join(s.pgHome(), "install")
	bin := filepath.Join(install, "bin")
	if _, err := os.Stat(filepath.Join(install, ".complete")); err == nil {
		return bin, nil
	}
	jarDir := filepath.Join(s.cfg.CacheDir, "postgres-jar")
	fetchErr := s.mavenCopy(ctx, "postgres-pom.xml", jarDir, "copy-dependencies")
	if fetchErr == nil {
		fetchErr = unpackZonky(jarDir, install)
	}
	if fetchErr == nil {
		if err := os.WriteFile(filepath.Join(install, ".complete"), nil, 0o644); err != nil {
			return "", err
		}
		return bin, nil
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/postgres")
	if len(matches) > 0 {
		sort.Strings(matches)
		s.log.Warn("using the system PostgreSQL", "reason", fetchErr)
		return filepath.Dir(matches[len(matches)-1]), nil
	}
	return "", fmt.Errorf("%w: no PostgreSQL binaries (%v); install Debian's postgresql package, or set DATABASE_URL", ErrPrerequisite, fetchErr)
}

// unpackZonky extracts the .txz that zonky wraps in its jar.
func unpackZonky(jarDir, dest string) error {
	jars, _ := filepath.Glob(filepath.Join(jarDir, "embedded-postgres-binaries-*.jar"))
	if len(jars) == 0 {
		return errors.New("no embedded-postgres-binaries jar downloaded")
	}
	zr, err := zip.OpenReader(jars[0])
	if err != nil {
		return err
	}
	defer zr.Close()
	for _, f := range zr.File {
		if !strings.HasSuffix(f.Name, ".txz") {
			continue
		}
		rc, err := f.Open()
		if err != nil {
			return err
		}
		defer rc.Close()
		xr, err := xz.NewReader(rc)
		if err != nil {
			return err
		}
		return untar(xr, dest)
	}
	return errors.New("no .txz inside " + jars[0])
}

func untar(r io.Reader, dest string) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		target := filepath.Join(dest, filepath.Clean("/"+h.Name))
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o755); err != nil {
				return err
			}
		case tar.TypeSymlink:
			_ = os.MkdirAll(filepath.Dir(target), 0o755)
			_ = os.Remove(target)
			if err := os.Symlink(h.Linkname, target); err != nil {
				return err
			}
		case tar.TypeReg:
			_ = os.MkdirAll(filepath.Dir(target), 0o755)
			f, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(h.Mode)|0o444)
			if err != nil {
				return err
			}
			_, err = io.Copy(f, tr)
			f.Close()
			if err != nil {
				return err
			}
		}
	}
}

func (s *Stack) initdb(ctx context.Context, bin string) error {
	if _, err := os.Stat(filepath.Join(s.pgData(), "PG_VERSION")); err == nil {
		return nil
	}
	if err := os.MkdirAll(s.pgData(), 0o700); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "initdb"), "-D", s.pgData(), "-U", "postgres",
		"-A", "trust", "-E", "UTF8", "--no-sync", "--locale=C")
	if err := s.asPostgresUser(cmd); err != nil {
		return err
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		_ = os.RemoveAll(s.pgData())
		return fmt.Errorf("initdb failed: %w\n%s", err, lastLines(string(out), 10))
	}
	return nil
}

// asPostgresUser makes cmd run as "nobody" when we are root, owning the data directory.
func (s *Stack) asPostgresUser(cmd *exec.Cmd) error {
	if os.Geteuid() != 0 {
		return nil
	}
	u, err := user.Lookup("nobody")
	if err != nil {
		return fmt.Errorf("running as root needs a 'nobody' user for PostgreSQL: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chmod(s.pgHome(), 0o755); err != nil {
		return err
	}
	err = filepath.Walk(s.pgData(), func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
	if err != nil {
		return err
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	return nil
}

func syscallKill(pid int) error { return syscall.Kill(pid, syscall.SIGKILL) }

// RestartPostgres stops the server this stack started and starts it again, waiting until
// it accepts connections; fault tests use it. With crash set, the stop is PostgreSQL's
// immediate shutdown (SIGQUIT): every backend exits at once without a checkpoint and the
// restart replays WAL, as after a crash of the server process. (SIGKILL of the postmaster
// alone would leave its backends holding the shared memory, so the restart could fail.)
// Otherwise it is a fast shutdown (SIGINT). Every client connection is cut either way.
//
// Other test binaries may call Up meanwhile and see the server down: the restart holds
// the lock pkg/stacktest takes around Up, and it waits for the old process itself, not
// for the pid file, which someone else's Up may already have rewritten.
func (s *Stack) RestartPostgres(ctx context.Context, crash bool) error {
	unlock, err := Flock(filepath.Join(s.cfg.CacheDir, "stack.lock"))
	if err != nil {
		return err
	}
	defer unlock()
	pid, ok := s.running("postgres")
	if !ok {
		return errors.New("postgres is not running")
	}
	sig := syscall.SIGINT
	if crash {
		sig = syscall.SIGQUIT
	}
	s.log.Info("restarting", "process", "postgres", "pid", pid, "crash", crash)
	if err := syscall.Kill(pid, sig); err != nil {
		return fmt.Errorf("signalling postgres: %w", err)
	}
	gone := func() error {
		if alive(pid) {
			return fmt.Errorf("pid %d still running", pid)
		}
		return nil
	}
	if err := waitFor(ctx, 30*time.Second, "PostgreSQL to stop", gone); err != nil {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		if err := waitFor(ctx, 10*time.Second, "PostgreSQL to die", gone); err != nil {
			return err
		}
	}
	if cur, _ := s.readPid("postgres"); cur == pid {
		_ = os.Remove(s.pidFile("postgres"))
	}
	// The port stays bound for a moment after the postmaster is gone.
	if err := waitFor(ctx, 10*time.Second, "the PostgreSQL port to be free", func() error {
		if _, ok := s.running("postgres"); ok {
			return nil // someone else's Up started it already
		}
		return checkPortFree(s.cfg.PostgresPort, "postgres")
	}); err != nil {
		return err
	}
	return s.upPostgres(ctx)
}

// readPid returns the pid recorded for name (0 if none).
func (s *Stack) readPid(name string) (int, error) {
	data, err := os.ReadFile(s.pidFile(name))
	if err != nil {
		return 0, err
	}
	pidText, _, _ := strings.Cut(strings.TrimSpace(string(data)), "\n")
	return strconv.Atoi(pidText)
}

// alive reports whether pid runs (a zombie does not count).
func alive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	f := strings.Fields(string(stat))
	return len(f) > 2 && f[2] != "Z"
}

// Flock takes an exclusive lock on path (flock(2)), creating it if needed, and returns
// its release. It blocks while another process holds the lock.
func Flock(path string) (func(), error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
}
