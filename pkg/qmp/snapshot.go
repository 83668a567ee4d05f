package qmp

import (
	"context"
	"errors"
)

// transactionAction is one action of a QMP transaction.
type transactionAction struct {
	Type string `json:"type"`
	Data any    `json:"data"`
}

// internalSnapshot names a block node and a snapshot tag.
type internalSnapshot struct {
	Device string `json:"device"`
	Name   string `json:"name"`
}

// SnapshotInternal takes an internal snapshot tagged tag of every block
// node in nodes (qcow2 format nodes) in one transaction of
// blockdev-snapshot-internal-sync: all of them or, if one fails, none.
func (c *Client) SnapshotInternal(ctx context.Context, nodes []string, tag string) error {
	if len(nodes) == 0 {
		return errors.New("qmp: a snapshot of no nodes")
	}
	actions := make([]transactionAction, 0, len(nodes))
	for _, n := range nodes {
		actions = append(actions, transactionAction{Type: "blockdev-snapshot-internal-sync", Data: internalSnapshot{Device: n, Name: tag}})
	}
	return c.Execute(ctx, "transaction", map[string]any{"actions": actions}, nil)
}

// DeleteSnapshotInternal deletes the internal snapshot tag of the block
// node (blockdev-snapshot-delete-internal-sync).
func (c *Client) DeleteSnapshotInternal(ctx context.Context, node, tag string) error {
	return c.Execute(ctx, "blockdev-snapshot-delete-internal-sync", internalSnapshot{Device: node, Name: tag}, nil)
}
