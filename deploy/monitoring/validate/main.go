// Command validate checks pricewave's monitoring files with Prometheus' own libraries, as promtool
// does: `validate rules FILE` (rulefmt + the PromQL parser: `promtool check rules`), `validate exprs`
// (a JSON array of PromQL expressions on stdin, e.g. a Grafana dashboard's targets) and
// `validate metrics` (a text exposition on stdin, linted by promlint: `promtool check metrics`).
// Each prints JSON on stdout; problems exit 1 with one line per problem on stderr.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	"github.com/prometheus/common/model"
	"github.com/prometheus/common/promslog"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
)

var promql = parser.NewParser(parser.Options{})

// metricNames returns the metric names an expression selects, sorted and unique.
func metricNames(expr string) ([]string, error) {
	parsed, err := promql.ParseExpr(expr)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, selector := range parser.ExtractSelectors(parsed) {
		for _, matcher := range selector {
			if matcher.Name == model.MetricNameLabel {
				seen[matcher.Value] = true
			}
		}
	}
	names := make([]string, 0, len(seen))
	for name := range seen {
		names = append(names, name)
	}
	sort.Strings(names)
	return names, nil
}

type rule struct {
	Alert       string            `json:"alert,omitempty"`
	Record      string            `json:"record,omitempty"`
	Expr        string            `json:"expr"`
	For         string            `json:"for"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	Metrics     []string          `json:"metrics"`
}

func fail(problems []string) {
	for _, problem := range problems {
		fmt.Fprintln(os.Stderr, problem)
	}
	os.Exit(1)
}

func emit(value any) {
	if err := json.NewEncoder(os.Stdout).Encode(value); err != nil {
		fail([]string{err.Error()})
	}
}

func checkRules(file string) {
	groups, errs := rulefmt.ParseFile(file, false, model.UTF8Validation, promql, promslog.NewNopLogger())
	if len(errs) > 0 {
		problems := make([]string, len(errs))
		for i, err := range errs {
			problems[i] = err.Error()
		}
		fail(problems)
	}
	out := map[string][]rule{}
	for _, group := range groups.Groups {
		for _, r := range group.Rules {
			names, err := metricNames(r.Expr)
			if err != nil {
				fail([]string{err.Error()})
			}
			out[group.Name] = append(out[group.Name], rule{
				Alert: r.Alert, Record: r.Record, Expr: r.Expr, For: r.For.String(),
				Labels: r.Labels, Annotations: r.Annotations, Metrics: names,
			})
		}
	}
	emit(out)
}

func checkExprs() {
	var exprs []string
	if err := json.NewDecoder(os.Stdin).Decode(&exprs); err != nil {
		fail([]string{"stdin: a JSON array of PromQL expressions: " + err.Error()})
	}
	out := make([][]string, len(exprs))
	var problems []string
	for i, expr := range exprs {
		names, err := metricNames(expr)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%q: %v", expr, err))
		}
		out[i] = names
	}
	if len(problems) > 0 {
		fail(problems)
	}
	emit(out)
}

func checkMetrics() {
	problems, err := promlint.New(io.Reader(os.Stdin)).Lint()
	if err != nil {
		fail([]string{err.Error()})
	}
	lines := make([]string, len(problems))
	for i, problem := range problems {
		lines[i] = problem.Metric + ": " + problem.Text
	}
	if len(lines) > 0 {
		fail(lines)
	}
	emit([]string{})
}

func main() {
	if len(os.Args) < 2 {
		fail([]string{"usage: validate rules FILE | exprs < JSON | metrics < EXPOSITION"})
	}
	switch os.Args[1] {
	case "rules":
		if len(os.Args) != 3 {
			fail([]string{"usage: validate rules FILE"})
		}
		checkRules(os.Args[2])
	case "exprs":
		checkExprs()
	case "metrics":
		checkMetrics()
	default:
		fail([]string{"unknown check " + os.Args[1] + ": rules, exprs or metrics"})
	}
}
