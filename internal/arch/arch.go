// Package arch holds no code: its test checks the import rules the package
// docs state, so that a package that reaches up, or product code that
// imports a test double, fails the build's tests instead of a review.
package arch
