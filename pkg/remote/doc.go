// Package remote runs commands and writes files on the hosts etcdadm
// manages, over SSH (Dial) or on the machine it runs on (NewLocal), behind
// the Transport interface, so that the plan's sinks do not care which.
//
// Everything runs as root. A non-root SSH login goes through passwordless
// sudo ("sudo -n"), and files are written by an OpenSSH sftp-server started
// through sudo, so they land root-owned with the requested mode.
//
// Files are replaced atomically: a temporary file in the same directory,
// created 0600, synced, given its owner and mode, then renamed over the
// target. A differing previous content can be backed up first, and what an
// interrupted write leaves behind is removed by the next write there.
//
// Connections follow the ssh command's rules where they overlap: explicit
// Config fields, then the ssh config file (HostName, User, Port,
// IdentityFile, IdentitiesOnly, ProxyJump, UserKnownHostsFile, IdentityAgent,
// HashKnownHosts), then defaults. Host keys are checked against known_hosts;
// a new key is recorded only with AcceptNewHostKeys, a changed key is always
// refused. Network failures are retried with backoff; authentication,
// host key and sudo failures are not, and match ErrAuth, ErrHostKeyUnknown,
// ErrHostKeyChanged and ErrSudoPassword with errors.Is.
//
// Every error names the host; a failed command is a *CommandError carrying
// its exit code and stderr. Nothing logged or returned holds key material,
// passphrases, passwords or file contents. Callers may log the commands
// they run (etcdadm does with --verbose), so secrets belong in stdin or in
// files, never in a command line.
//
// It is a leaf: it imports nothing of etcdadm's but shell quoting.
package remote
