package qmp

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
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

// JobInfo is one of QEMU's jobs, as query-jobs answers.
type JobInfo struct {
	ID              string `json:"id"`
	Type            string `json:"type"`
	Status          string `json:"status"`
	CurrentProgress int64  `json:"current-progress"`
	TotalProgress   int64  `json:"total-progress"`
	Error           string `json:"error,omitempty"`
}

// snapshotJob is the arguments of snapshot-save, snapshot-load and
// snapshot-delete.
type snapshotJob struct {
	JobID   string   `json:"job-id"`
	Tag     string   `json:"tag"`
	VMState string   `json:"vmstate,omitempty"`
	Devices []string `json:"devices"`
}

// SnapshotSave starts job jobID saving the VM's RAM and device state into
// the node vmstate and an internal snapshot tag of every node in devices
// (snapshot-save). WaitJob waits for it.
func (c *Client) SnapshotSave(ctx context.Context, jobID, tag, vmstate string, devices []string) error {
	return c.Execute(ctx, "snapshot-save", snapshotJob{JobID: jobID, Tag: tag, VMState: vmstate, Devices: devices}, nil)
}

// SnapshotLoad starts job jobID loading the snapshot tag: devices back to
// it, RAM and device state from vmstate (snapshot-load). A guest that ran
// runs again once it is loaded.
func (c *Client) SnapshotLoad(ctx context.Context, jobID, tag, vmstate string, devices []string) error {
	return c.Execute(ctx, "snapshot-load", snapshotJob{JobID: jobID, Tag: tag, VMState: vmstate, Devices: devices}, nil)
}

// SnapshotDelete starts job jobID deleting the snapshot tag from every
// node in devices (snapshot-delete).
func (c *Client) SnapshotDelete(ctx context.Context, jobID, tag string, devices []string) error {
	return c.Execute(ctx, "snapshot-delete", snapshotJob{JobID: jobID, Tag: tag, Devices: devices}, nil)
}

// QueryJobs lists QEMU's jobs.
func (c *Client) QueryJobs(ctx context.Context) ([]JobInfo, error) {
	var jobs []JobInfo
	err := c.Execute(ctx, "query-jobs", nil, &jobs)
	return jobs, err
}

// JobDismiss removes a concluded job.
func (c *Client) JobDismiss(ctx context.Context, id string) error {
	return c.Execute(ctx, "job-dismiss", map[string]string{"id": id}, nil)
}

// jobPoll is how often WaitJob asks after a job.
const jobPoll = 100 * time.Millisecond

// WaitJob waits until job id concludes or ctx ends, calling progress with
// each state it sees, then dismisses it. A job that concluded with an
// error returns it.
func (c *Client) WaitJob(ctx context.Context, id string, progress func(JobInfo)) error {
	for {
		jobs, err := c.QueryJobs(ctx)
		if err != nil {
			return err
		}
		i := slices.IndexFunc(jobs, func(j JobInfo) bool { return j.ID == id })
		if i < 0 {
			return fmt.Errorf("qmp: job %s is gone", id)
		}
		j := jobs[i]
		if progress != nil {
			progress(j)
		}
		if j.Status == "concluded" {
			// Dismissing is housekeeping: the job's outcome is known.
			derr := c.JobDismiss(context.WithoutCancel(ctx), id)
			if j.Error != "" {
				return fmt.Errorf("qmp: job %s: %s", id, j.Error)
			}
			return derr
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("qmp: job %s still %s: %w", id, j.Status, ctx.Err())
		case <-time.After(jobPoll):
		}
	}
}
