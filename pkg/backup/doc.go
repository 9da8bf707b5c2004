// Package backup takes etcd's backups on the member hosts and reads them
// back on the operator's machine: a systemd timer runs `etcdadm backup run`
// on every member, a key held under a lease in etcd picks the one member
// that streams a snapshot from its own etcd, checked as it passes (the
// sha256 trailer, the revision and keys of its pages), encrypted with age
// for the inventory's recipients and uploaded to an S3 bucket in parts,
// never whole on disk or in memory; a small JSON manifest goes next to
// it, old backups are pruned, and a Prometheus textfile records the run.
// On the operator's machine it lists, checks and verifies the backups (a
// restore drill: download, decrypt, restore into a scratch directory and
// start a throwaway etcd on it), and fetches one for a restore.
//
// backup owns what runs on a member host for its backups and what it
// installs there (its configuration, the units); it must not import plan,
// the runtimes, gather, the executor or pipeline.
package backup
