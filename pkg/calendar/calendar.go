// Package calendar reads systemd's calendar events (OnCalendar=, as
// systemd.time(7) writes them) and finds when one last elapsed: a timer's
// schedule is checked on the operator's machine, where systemd may not be,
// and every member of a cluster names the same period of a schedule.
//
// It is a leaf: it imports nothing of etcdadm's.
package calendar

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Spec is a parsed calendar event.
type Spec struct {
	text     string
	years    []component
	months   [13]bool
	days     [32]bool
	weekdays [7]bool
	hours    [24]bool
	minutes  [60]bool
	seconds  [60]bool
	loc      *time.Location
}

// component is a value, a range or a repetition of one field.
type component struct{ from, to, step int }

func (c component) has(v int) bool {
	if v < c.from || v > c.to {
		return false
	}
	return c.step == 0 || (v-c.from)%c.step == 0
}

var shorthands = map[string]string{
	"minutely":     "*-*-* *:*:00",
	"hourly":       "*-*-* *:00:00",
	"daily":        "*-*-* 00:00:00",
	"weekly":       "Mon *-*-* 00:00:00",
	"monthly":      "*-*-01 00:00:00",
	"yearly":       "*-01-01 00:00:00",
	"annually":     "*-01-01 00:00:00",
	"quarterly":    "*-01,04,07,10-01 00:00:00",
	"semiannually": "*-01,07-01 00:00:00",
}

var weekdayNames = map[string]time.Weekday{
	"mon": time.Monday, "monday": time.Monday, "tue": time.Tuesday, "tuesday": time.Tuesday,
	"wed": time.Wednesday, "wednesday": time.Wednesday, "thu": time.Thursday, "thursday": time.Thursday,
	"fri": time.Friday, "friday": time.Friday, "sat": time.Saturday, "saturday": time.Saturday,
	"sun": time.Sunday, "sunday": time.Sunday,
}

// Parse reads a calendar event such as "*-*-* 00/6:00:00", "Mon..Fri 03:30",
// "daily" or "*-*-01 04:00 UTC". The time zone, when none is named, is
// loc's (the host's own, time.Local, where the timer runs).
func Parse(s string, loc *time.Location) (*Spec, error) {
	text := strings.Join(strings.Fields(s), " ")
	if text == "" {
		return nil, fmt.Errorf("empty calendar event")
	}
	sp := &Spec{text: text, loc: loc}
	fields := strings.Fields(text)
	if last := fields[len(fields)-1]; len(fields) > 1 && isZone(last) {
		z, err := time.LoadLocation(last)
		if err != nil {
			return nil, fmt.Errorf("%q: unknown time zone %q", s, last)
		}
		sp.loc, fields = z, fields[:len(fields)-1]
	}
	if len(fields) == 1 {
		if full, ok := shorthands[strings.ToLower(fields[0])]; ok {
			fields = strings.Fields(full)
		}
	}
	weekday, date, clock := "", "*-*-*", "00:00:00"
	for i, f := range fields {
		switch {
		case strings.Contains(f, ":"):
			if i != len(fields)-1 {
				return nil, fmt.Errorf("%q: the time (%s) comes last, after the weekday and the date", s, f)
			}
			clock = f
		case strings.Contains(f, "-") || strings.Contains(f, "~"):
			date = f
		case i == 0 && len(fields) > 1 || len(fields) == 1 && isWeekdays(f):
			weekday = f
		default:
			return nil, fmt.Errorf("%q: %q is neither a weekday, a date (Y-M-D) nor a time (H:M:S)", s, f)
		}
	}
	if err := sp.parseWeekdays(weekday); err != nil {
		return nil, fmt.Errorf("%q: %w", s, err)
	}
	if err := sp.parseDate(date); err != nil {
		return nil, fmt.Errorf("%q: %w", s, err)
	}
	if err := sp.parseClock(clock); err != nil {
		return nil, fmt.Errorf("%q: %w", s, err)
	}
	return sp, nil
}

func isZone(f string) bool {
	return f == "UTC" || (strings.Contains(f, "/") && !strings.ContainsAny(f, ":*,.") && !strings.ContainsAny(f[:1], "0123456789"))
}

func isWeekdays(f string) bool {
	for _, part := range strings.FieldsFunc(strings.ToLower(f), func(r rune) bool { return r == ',' || r == '.' }) {
		if _, ok := weekdayNames[part]; !ok {
			return false
		}
	}
	return true
}

func (sp *Spec) parseWeekdays(f string) error {
	if f == "" {
		for i := range sp.weekdays {
			sp.weekdays[i] = true
		}
		return nil
	}
	for _, part := range strings.Split(strings.ToLower(f), ",") {
		from, to, isRange := strings.Cut(part, "..")
		a, ok := weekdayNames[from]
		if !ok {
			return fmt.Errorf("%q is not a weekday (Mon, Tue, ... or Monday, ...)", from)
		}
		b := a
		if isRange {
			if b, ok = weekdayNames[to]; !ok {
				return fmt.Errorf("%q is not a weekday (Mon, Tue, ... or Monday, ...)", to)
			}
		}
		for d := a; ; d = (d + 1) % 7 {
			sp.weekdays[d] = true
			if d == b {
				break
			}
		}
	}
	return nil
}

func (sp *Spec) parseDate(f string) error {
	if strings.Contains(f, "~") {
		return fmt.Errorf("the last-days-of-the-month form (~) is not supported here; name the days")
	}
	parts := strings.Split(f, "-")
	switch len(parts) {
	case 2:
		parts = append([]string{"*"}, parts...)
	case 3:
	default:
		return fmt.Errorf("%q is not a date: write it YEAR-MONTH-DAY or MONTH-DAY, each a number, *, a list (1,15), a range (1..5) or a repetition (1/2)", f)
	}
	var err error
	if sp.years, err = components(parts[0], "year", 1970, 2199); err != nil {
		return err
	}
	if err := fill(sp.months[:], parts[1], "month", 1, 12); err != nil {
		return err
	}
	return fill(sp.days[:], parts[2], "day", 1, 31)
}

func (sp *Spec) parseClock(f string) error {
	parts := strings.Split(f, ":")
	switch len(parts) {
	case 2:
		parts = append(parts, "00")
	case 3:
	default:
		return fmt.Errorf("%q is not a time: write it HOUR:MINUTE[:SECOND]", f)
	}
	if strings.Contains(parts[2], ".") {
		return fmt.Errorf("%q: fractions of a second are not supported here", f)
	}
	if err := fill(sp.hours[:], parts[0], "hour", 0, 23); err != nil {
		return err
	}
	if err := fill(sp.minutes[:], parts[1], "minute", 0, 59); err != nil {
		return err
	}
	return fill(sp.seconds[:], parts[2], "second", 0, 59)
}

// components reads a field: "*", or a list of values, ranges (a..b) and
// repetitions (a/n, a..b/n, */n), each within min..max.
func components(f, what string, min, max int) ([]component, error) {
	var out []component
	for _, part := range strings.Split(f, ",") {
		base, stepText, repeats := strings.Cut(part, "/")
		c := component{from: min, to: max}
		if base != "*" {
			from, to, isRange := strings.Cut(base, "..")
			var err error
			if c.from, err = number(from, what, min, max); err != nil {
				return nil, err
			}
			c.to = c.from
			if isRange {
				if c.to, err = number(to, what, min, max); err != nil {
					return nil, err
				}
				if c.to < c.from {
					return nil, fmt.Errorf("%s range %s goes backwards", what, base)
				}
			} else if repeats {
				c.to = max
			}
		}
		if repeats {
			step, err := strconv.Atoi(stepText)
			if err != nil || step < 1 {
				return nil, fmt.Errorf("%s repetition %q: /%s is not a positive whole number", what, part, stepText)
			}
			c.step = step
		}
		out = append(out, c)
	}
	return out, nil
}

func fill(set []bool, f, what string, min, max int) error {
	cs, err := components(f, what, min, max)
	if err != nil {
		return err
	}
	for v := min; v <= max; v++ {
		for _, c := range cs {
			if c.has(v) {
				set[v] = true
			}
		}
	}
	return nil
}

func number(s, what string, min, max int) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("%s %q is not a number", what, s)
	}
	if n < min || n > max {
		return 0, fmt.Errorf("%s %d is out of range (%d..%d)", what, n, min, max)
	}
	return n, nil
}

// String is the event as given, spaces normalised.
func (sp *Spec) String() string { return sp.text }

func (sp *Spec) dayMatches(y int, m time.Month, d int, wd time.Weekday) bool {
	if !sp.months[m] || !sp.days[d] || !sp.weekdays[wd] {
		return false
	}
	for _, c := range sp.years {
		if c.has(y) {
			return true
		}
	}
	return false
}

// searchDays bounds how far Prev looks back: any event that can elapse at
// all does within 28 years (weekdays and leap days repeat then).
const searchDays = 28*366 + 1

// Prev is the last time the event elapsed at or before t; false when it
// never did within the last 28 years.
func (sp *Spec) Prev(t time.Time) (time.Time, bool) {
	lt := t.In(sp.loc)
	day := time.Date(lt.Year(), lt.Month(), lt.Day(), 0, 0, 0, 0, sp.loc)
	limit := lt.Hour()*3600 + lt.Minute()*60 + lt.Second()
	for i := 0; i < searchDays; i++ {
		y, m, d := day.Date()
		if sp.dayMatches(y, m, d, day.Weekday()) {
			if sec, ok := sp.lastSecond(limit); ok {
				at := time.Date(y, m, d, sec/3600, sec/60%60, sec%60, 0, sp.loc)
				if !at.After(t) {
					return at, true
				}
			}
		}
		day = day.AddDate(0, 0, -1)
		limit = 24*3600 - 1
	}
	return time.Time{}, false
}

// lastSecond is the latest second of the day, at most limit, that the
// event's hours, minutes and seconds hold.
func (sp *Spec) lastSecond(limit int) (int, bool) {
	for h := min(23, limit/3600); h >= 0; h-- {
		if !sp.hours[h] {
			continue
		}
		for m := 59; m >= 0; m-- {
			if !sp.minutes[m] {
				continue
			}
			for s := 59; s >= 0; s-- {
				if sp.seconds[s] && h*3600+m*60+s <= limit {
					return h*3600 + m*60 + s, true
				}
			}
		}
	}
	return 0, false
}

// Next is the first time the event elapses after t; false when it never
// does within 28 years.
func (sp *Spec) Next(t time.Time) (time.Time, bool) {
	lt := t.In(sp.loc)
	day := time.Date(lt.Year(), lt.Month(), lt.Day(), 0, 0, 0, 0, sp.loc)
	from := lt.Hour()*3600 + lt.Minute()*60 + lt.Second() + 1
	for i := 0; i < searchDays; i++ {
		y, m, d := day.Date()
		if sp.dayMatches(y, m, d, day.Weekday()) {
			for sec := from; sec < 24*3600; sec++ {
				if sp.hours[sec/3600] && sp.minutes[sec/60%60] && sp.seconds[sec%60] {
					at := time.Date(y, m, d, sec/3600, sec/60%60, sec%60, 0, sp.loc)
					if at.After(t) {
						return at, true
					}
				}
			}
		}
		day = day.AddDate(0, 0, 1)
		from = 0
	}
	return time.Time{}, false
}
