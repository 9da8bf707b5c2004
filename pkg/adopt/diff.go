package adopt

import (
	"bytes"
	"fmt"
	"net"
	"slices"
	"strings"

	"github.com/etcdadm-io/etcdadm/pkg/certs"
	"github.com/etcdadm-io/etcdadm/pkg/config"
	"github.com/etcdadm-io/etcdadm/pkg/kubelet"
)

// Differences compares what runs with what inventory c would write, as
// unified diffs: the inventory itself (c against the adopted one), then per
// host its etcd.yaml (or environment file), its certificates' SANs and its
// kubelet configuration. "" when c renders what runs.
func Differences(c *config.Cluster, res *Result, hosts []Host) (string, error) {
	var out strings.Builder
	given, err := Marshal(c)
	if err != nil {
		return "", err
	}
	out.WriteString(Unified("inventory (given)", "inventory (running)", given, res.YAML))
	byName := map[string]Host{}
	for _, h := range hosts {
		byName[h.Name] = h
	}
	for _, h := range c.Spec.Hosts {
		files := byName[h.Name]
		st := res.Members[h.Name]
		p, ours, err := Render(c, h, st, files)
		if err != nil {
			fmt.Fprintf(&out, "%s: the inventory cannot render %s: %v\n", h.Name, p, err)
		} else {
			theirs, _ := files.file(p)
			out.WriteString(Unified(h.Name+":"+p+" (running)", h.Name+":"+p+" (inventory)", theirs, ours))
		}
		for _, s := range certs.LeafSpecs()[:2] {
			f, ok := res.Leaves[h.Name][s.Name]
			if !ok {
				continue
			}
			cert, err := parseCert(f.CertPEM)
			if err != nil {
				continue
			}
			want := s.AltNames(c, h)
			have := sanLines(cert.DNSNames, cert.IPAddresses)
			wantLines := sanLines(want.DNSNames, want.IPs)
			out.WriteString(Unified(f.CertPath+" SANs (running)", f.CertPath+" SANs (inventory)", have, wantLines))
		}
		if res.Layout == LayoutGuide {
			theirs, _ := files.file(kubelet.ConfigPath)
			ours, err := kubelet.ConfigFile(c)
			if err != nil {
				fmt.Fprintf(&out, "%s: the inventory cannot render %s: %v\n", h.Name, kubelet.ConfigPath, err)
			} else if kubeletDiff(theirs, ours) != "" {
				out.WriteString(Unified(h.Name+":"+kubelet.ConfigPath+" (running)", h.Name+":"+kubelet.ConfigPath+" (inventory)", theirs, ours))
			}
		}
	}
	return out.String(), nil
}

// sanLines lists SANs one a line, DNS names sorted as kubeadm signs them.
func sanLines(dns []string, ips []net.IP) []byte {
	var b bytes.Buffer
	seen := map[string]bool{}
	for _, d := range slices.Sorted(slices.Values(dns)) {
		if !seen["DNS:"+d] {
			seen["DNS:"+d] = true
			fmt.Fprintf(&b, "DNS:%s\n", d)
		}
	}
	for _, ip := range ips {
		if !seen["IP:"+ip.String()] {
			seen["IP:"+ip.String()] = true
			fmt.Fprintf(&b, "IP:%s\n", ip)
		}
	}
	return b.Bytes()
}

// Unified is a unified diff of a and b, with three lines of context; ""
// when they are equal.
func Unified(nameA, nameB string, a, b []byte) string {
	if bytes.Equal(a, b) {
		return ""
	}
	la, lb := lines(a), lines(b)
	// Longest common subsequence, from the ends.
	n, m := len(la), len(lb)
	lcs := make([][]int, n+1)
	for i := range lcs {
		lcs[i] = make([]int, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if la[i] == lb[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	type edit struct {
		op   byte
		text string
		i, j int
	}
	var edits []edit
	i, j := 0, 0
	for i < n || j < m {
		switch {
		case i < n && j < m && la[i] == lb[j]:
			edits = append(edits, edit{' ', la[i], i, j})
			i, j = i+1, j+1
		case i < n && (j == m || lcs[i+1][j] >= lcs[i][j+1]):
			edits = append(edits, edit{'-', la[i], i, j})
			i++
		default:
			edits = append(edits, edit{'+', lb[j], i, j})
			j++
		}
	}
	var out strings.Builder
	fmt.Fprintf(&out, "--- %s\n+++ %s\n", nameA, nameB)
	const ctx = 3
	for k := 0; k < len(edits); {
		if edits[k].op == ' ' {
			k++
			continue
		}
		start := max(0, k-ctx)
		end := k
		for end < len(edits) {
			if edits[end].op != ' ' {
				end++
				continue
			}
			run := end
			for run < len(edits) && edits[run].op == ' ' {
				run++
			}
			if run-end > 2*ctx || run == len(edits) {
				end = min(end+ctx, len(edits))
				break
			}
			end = run
		}
		var oldN, newN int
		for _, e := range edits[start:end] {
			if e.op != '+' {
				oldN++
			}
			if e.op != '-' {
				newN++
			}
		}
		fmt.Fprintf(&out, "@@ -%d,%d +%d,%d @@\n", edits[start].i+1, oldN, edits[start].j+1, newN)
		for _, e := range edits[start:end] {
			fmt.Fprintf(&out, "%c%s\n", e.op, e.text)
		}
		k = end
	}
	return out.String()
}

func lines(b []byte) []string {
	s := strings.TrimSuffix(string(b), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}
