package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
)

// caPEM is a self-signed CA certificate.
func caPEM(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "s3-ca"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func backupInventory(t *testing.T, backup string) (dir, data string) {
	t.Helper()
	dir = t.TempDir()
	return dir, "apiVersion: etcdadm/v1alpha1\nkind: Cluster\nmetadata: {name: prod}\nspec:\n  hosts:\n  - {name: infra0, address: 10.0.0.6}\n  backup:\n" + backup
}

func TestBackupValid(t *testing.T) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	dir, data := backupInventory(t, `    schedule: "Mon..Fri 03:30"
    encryption: {recipients: [`+id.Recipient().String()+`]}
    s3: {endpoint: "https://10.0.0.9:7070", bucket: etcd-backups, prefix: prod/, credentialsFile: s3.env, caFile: ca.crt}
`)
	if err := os.WriteFile(filepath.Join(dir, "s3.env"), []byte("# the lab's key\nexport AWS_ACCESS_KEY_ID=backup\nAWS_SECRET_ACCESS_KEY=\"s3cr3t-value\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ca := caPEM(t)
	if err := os.WriteFile(filepath.Join(dir, "ca.crt"), ca, 0o644); err != nil {
		t.Fatal(err)
	}
	c, _, err := Parse([]byte(data), "cluster.yaml", dir)
	if err != nil {
		t.Fatal(err)
	}
	b := c.Spec.Backup
	if b.Keep != DefaultBackupKeep || b.S3.Region != DefaultS3Region || b.Schedule != "Mon..Fri 03:30" {
		t.Errorf("defaults: %+v", b)
	}
	if b.Credentials.AccessKeyID != "backup" || b.Credentials.SecretAccessKey != "s3cr3t-value" || string(b.CA) != string(ca) {
		t.Errorf("credentials or CA not read: %v %d bytes", b.Credentials, len(b.CA))
	}
	if rs, err := b.AgeRecipients(); err != nil || len(rs) != 1 {
		t.Errorf("recipients: %v %v", rs, err)
	}
	for _, s := range []string{b.Credentials.String(), b.Credentials.GoString()} {
		if strings.Contains(s, "s3cr3t") {
			t.Errorf("the secret prints: %s", s)
		}
	}
}

// A credentials file that does not read is reported by its line, never
// with a value from it.
func TestBackupCredentialsNeverPrinted(t *testing.T) {
	for content, want := range map[string]string{
		"AWS_ACCESS_KEY_ID=backup\nAWS_SECRET_ACCESS_KEY=s3cr3t-value\nAWS_REGION=s3cr3t-value\n": "line 3 sets AWS_REGION",
		"AWS_ACCESS_KEY_ID=backup\ns3cr3t-value\n":                                                "line 2 is not KEY=VALUE",
		"AWS_ACCESS_KEY_ID=backup\n":                                                              "no AWS_SECRET_ACCESS_KEY= line",
		"AWS_ACCESS_KEY_ID=backup\nAWS_SECRET_ACCESS_KEY=s3cr3t value\n":                          "a value holds a space",
	} {
		dir, data := backupInventory(t, `    encryption: {none: true}
    s3: {endpoint: "http://127.0.0.1:7070", bucket: etcd-backups, credentialsFile: s3.env}
`)
		if err := os.WriteFile(filepath.Join(dir, "s3.env"), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		_, _, err := Parse([]byte(data), "cluster.yaml", dir)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "spec.backup.s3.credentialsFile (line 9)") {
			t.Errorf("%q: %v, want the field, its line and %q", content, err, want)
		}
		if err != nil && strings.Contains(err.Error(), "s3cr3t") {
			t.Errorf("the secret is in the message: %v", err)
		}
	}
}
