package calendar

import (
	"strings"
	"testing"
	"time"
)

func at(s string) time.Time {
	t, err := time.Parse("2006-01-02 15:04:05", s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestPrevAndNext(t *testing.T) {
	for _, tc := range []struct {
		event, now, prev, next string
	}{
		{"*-*-* 00/6:00:00", "2026-03-10 13:59:59", "2026-03-10 12:00:00", "2026-03-10 18:00:00"},
		{"*-*-* 00/6:00:00", "2026-03-10 12:00:00", "2026-03-10 12:00:00", "2026-03-10 18:00:00"},
		{"*-*-* 00/6:00:00", "2026-03-10 03:00:00", "2026-03-10 00:00:00", "2026-03-10 06:00:00"},
		{"*-*-* 00/6:00:00", "2026-03-10 23:00:00", "2026-03-10 18:00:00", "2026-03-11 00:00:00"},
		{"daily", "2026-03-10 00:00:01", "2026-03-10 00:00:00", "2026-03-11 00:00:00"},
		{"hourly", "2026-03-10 07:30:00", "2026-03-10 07:00:00", "2026-03-10 08:00:00"},
		{"weekly", "2026-03-12 10:00:00", "2026-03-09 00:00:00", "2026-03-16 00:00:00"},
		{"Mon..Fri 03:30", "2026-03-09 03:29:00", "2026-03-06 03:30:00", "2026-03-09 03:30:00"},
		{"Sat,Sun *-*-* 12:00", "2026-03-11 12:00:00", "2026-03-08 12:00:00", "2026-03-14 12:00:00"},
		{"*-*-01 04:00 UTC", "2026-03-10 00:00:00", "2026-03-01 04:00:00", "2026-04-01 04:00:00"},
		{"quarterly", "2026-03-10 00:00:00", "2026-01-01 00:00:00", "2026-04-01 00:00:00"},
		{"*-02-29 00:00", "2026-03-10 00:00:00", "2024-02-29 00:00:00", "2028-02-29 00:00:00"},
		{"*:0/15", "2026-03-10 10:44:59", "2026-03-10 10:30:00", "2026-03-10 10:45:00"},
		{"2025-*-* 00:00", "2026-03-10 00:00:00", "2025-12-31 00:00:00", ""},
	} {
		sp, err := Parse(tc.event, time.UTC)
		if err != nil {
			t.Fatalf("%q: %v", tc.event, err)
		}
		prev, ok := sp.Prev(at(tc.now))
		if !ok || !prev.Equal(at(tc.prev)) {
			t.Errorf("%q before %s: %s %v, want %s", tc.event, tc.now, prev, ok, tc.prev)
		}
		next, ok := sp.Next(at(tc.now))
		if tc.next == "" {
			if ok {
				t.Errorf("%q after %s: %s, want none", tc.event, tc.now, next)
			}
			continue
		}
		if !ok || !next.Equal(at(tc.next)) {
			t.Errorf("%q after %s: %s %v, want %s", tc.event, tc.now, next, ok, tc.next)
		}
	}
}

func TestZone(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Skip("no time zone database:", err)
	}
	sp, err := Parse("*-*-* 06:00:00", berlin)
	if err != nil {
		t.Fatal(err)
	}
	prev, _ := sp.Prev(at("2026-01-10 06:00:00"))
	if want := at("2026-01-10 05:00:00"); !prev.Equal(want) {
		t.Errorf("06:00 Berlin before 06:00 UTC: %s, want %s", prev.UTC(), want)
	}
}

func TestInvalid(t *testing.T) {
	for event, want := range map[string]string{
		"":                   "empty",
		"*-*-* 25:00":        "hour 25 is out of range",
		"*-13-* 00:00":       "month 13 is out of range",
		"Mon..Frx 00:00":     `"frx" is not a weekday`,
		"*-*-* 00/0:00":      "not a positive whole number",
		"*-*-* 00:00:00.5":   "fractions of a second",
		"*-02~03 00:00":      "last-days-of-the-month",
		"every six hours":    "is neither a weekday",
		"*-*-* 00:00 Mars/X": "unknown time zone",
		"*-*-* 5..1:00":      "goes backwards",
		"00:00 *-*-*":        "the time (00:00) comes last",
	} {
		_, err := Parse(event, time.UTC)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want an error with %q", event, err, want)
		}
	}
}
