package firewall

import (
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

// RuleText reads back whatever the kernel holds, also rules this package
// did not write: odd shapes print raw and never panic.
func TestRuleTextOfForeignRules(t *testing.T) {
	for _, c := range []struct {
		exprs []expr.Any
		want  string
	}{
		{[]expr.Any{meta(expr.MetaKeyL4PROTO), cmp(expr.CmpOpEq, nil), verdict(expr.VerdictAccept)}, "meta l4proto 0x accept"},
		{[]expr.Any{cmp(expr.CmpOpEq, []byte{1})}, "[no load] 0x01"},
		{[]expr.Any{meta(expr.MetaKeyMARK), cmp(expr.CmpOpNeq, []byte{0, 0, 0, 1})}, "meta key3 != 0x00000001"},
	} {
		if got := RuleText(&nftables.Rule{Exprs: c.exprs}); got != c.want {
			t.Errorf("got %q, want %q", got, c.want)
		}
	}
}
