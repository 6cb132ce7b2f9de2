// Package framework is the shared harness of ptqgate's Ginkgo suites, in the
// manner of the Kubernetes e2e framework: the suites stay readable
// specifications of behaviour, and the plumbing lives here.
//
// It provides
//   - the labels every suite uses (labels.go), so label filters such as
//     `-ginkgo.label-filter='regression && R12'` work across suites;
//   - the black-box tier: SuiteCLI compiles the real ptqgate binary once per
//     suite (gexec.Build, from the SynchronizedBeforeSuite it registers) and
//     CLI.Run runs it, capturing its exit code, stdout and stderr (cli.go);
//   - the white-box tier: Calibrate, Export and Verify drive the core the way
//     the CLI does, returning the report model (core.go);
//   - fixtures and reference data in per-spec temporary folders (fixtures.go);
//   - typed Gomega matchers over reports and CLI results whose failure
//     messages name the rule, target and command instead of dumping
//     structures (matchers.go);
//   - gonum-style tolerance comparisons for floats (floats.go);
//   - the regression catalogue table of suites/regression/CATALOGUE.md
//     (catalogue.go).
//
// Nothing here asserts on its own: helpers return values and errors, and the
// specs decide. Helpers that cannot continue after a setup failure call
// Gomega with GinkgoHelper so failures point at the spec line.
package framework
