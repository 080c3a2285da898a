// Command promql-check parses every expression of a PrometheusRule with Prometheus's own PromQL
// parser, so that a rule the chart renders cannot reach a cluster with an expression Prometheus
// would refuse to load (the PrometheusRule CRD types expr as a plain string and checks nothing).
//
// It reads one PrometheusRule (JSON) on stdin and prints one JSON line per rule: its name and
// the metric names it selects, or the parser's error. Exit status: 0 when every expression
// parses, 1 when one does not, 2 when the input is not a PrometheusRule.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

type rule struct {
	Alert  string          `json:"alert"`
	Record string          `json:"record"`
	Expr   json.RawMessage `json:"expr"`
}

type prometheusRule struct {
	Kind string `json:"kind"`
	Spec struct {
		Groups []struct {
			Name  string `json:"name"`
			Rules []rule `json:"rules"`
		} `json:"groups"`
	} `json:"spec"`
}

type result struct {
	Group   string   `json:"group"`
	Rule    string   `json:"rule"`
	Metrics []string `json:"metrics,omitempty"`
	Error   string   `json:"error,omitempty"`
}

func main() {
	os.Exit(run(os.Stdin, os.Stdout, os.Stderr))
}

func run(in io.Reader, out, errOut io.Writer) int {
	var pr prometheusRule
	if err := json.NewDecoder(in).Decode(&pr); err != nil {
		fmt.Fprintf(errOut, "promql-check: stdin is not JSON: %v\n", err)
		return 2
	}
	if pr.Kind != "PrometheusRule" || len(pr.Spec.Groups) == 0 {
		fmt.Fprintf(errOut, "promql-check: stdin is not a PrometheusRule with groups (kind %q)\n", pr.Kind)
		return 2
	}
	p := parser.NewParser(parser.Options{})
	enc := json.NewEncoder(out)
	status := 0
	for _, g := range pr.Spec.Groups {
		for _, r := range g.Rules {
			res := result{Group: g.Name, Rule: r.Alert + r.Record}
			if expr, err := exprText(r.Expr); err != nil {
				res.Error = err.Error()
			} else if ast, err := p.ParseExpr(expr); err != nil {
				res.Error = err.Error()
			} else {
				res.Metrics = metricNames(ast)
			}
			if res.Error != "" {
				status = 1
			}
			if err := enc.Encode(res); err != nil {
				fmt.Fprintf(errOut, "promql-check: %v\n", err)
				return 2
			}
		}
	}
	return status
}

// exprText is the rule's expression as Prometheus reads it: the CRD allows a string or an
// integer (x-kubernetes-int-or-string).
func exprText(raw json.RawMessage) (string, error) {
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, nil
	}
	var n json.Number
	if err := json.Unmarshal(raw, &n); err == nil {
		return n.String(), nil
	}
	return "", fmt.Errorf("expr is neither a string nor a number: %s", raw)
}

// metricNames are the metric names the expression selects, sorted and without repeats.
func metricNames(ast parser.Expr) []string {
	seen := map[string]bool{}
	parser.Inspect(ast, func(node parser.Node, _ []parser.Node) error {
		if vs, ok := node.(*parser.VectorSelector); ok {
			for _, m := range vs.LabelMatchers {
				if m.Name == labels.MetricName && m.Type == labels.MatchEqual {
					seen[m.Value] = true
				}
			}
		}
		return nil
	})
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
