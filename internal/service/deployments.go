package service

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/deltadisk/deltadisk/internal/meta"
)

const keyDeployment = "sD" // sD sub 0 group 0 name → Deployment

func deploymentKey(sub, group, name string) []byte {
	return []byte(keyDeployment + strings.ToLower(sub) + "\x00" + strings.ToLower(group) + "\x00" + strings.ToLower(name))
}

func deploymentsPrefix(sub, group string) []byte {
	return []byte(keyDeployment + strings.ToLower(sub) + "\x00" + strings.ToLower(group) + "\x00")
}

// Deployment is the record of a template deployment into a resource group.
// The control plane evaluates and runs it; the service keeps it.
type Deployment struct {
	Subscription string    `json:"subscription"`
	Group        string    `json:"group"`
	Name         string    `json:"name"`
	State        string    `json:"state"` // Running, Succeeded, Failed
	Mode         string    `json:"mode"`
	Started      time.Time `json:"started"`
	Finished     time.Time `json:"finished,omitzero"`
	// CorrelationID names the deployment's asynchronous operation too.
	CorrelationID string          `json:"correlationId"`
	Parameters    json.RawMessage `json:"parameters,omitempty"`
	Outputs       json.RawMessage `json:"outputs,omitempty"`
	Resources     []string        `json:"resources,omitempty"` // ids deployed
	Error         *DeploymentError
	Operations    []DeploymentOperation `json:"operations,omitempty"`
}

// DeploymentError is why a deployment failed, as ARM shows it.
type DeploymentError struct {
	Code    string            `json:"code"`
	Message string            `json:"message"`
	Details []DeploymentError `json:"details,omitempty"`
}

// DeploymentOperation is one resource's deployment.
type DeploymentOperation struct {
	ID         string           `json:"id"`
	ResourceID string           `json:"resourceId"`
	Type       string           `json:"type"`
	Name       string           `json:"name"`
	State      string           `json:"state"`
	StatusCode string           `json:"statusCode"`
	Timestamp  time.Time        `json:"timestamp"`
	Duration   time.Duration    `json:"duration"`
	Error      *DeploymentError `json:"error,omitempty"`
}

// PutDeployment stores a deployment record; the group must exist.
func (s *Service) PutDeployment(ctx context.Context, d *Deployment) error {
	if !ValidDeploymentName(d.Name) {
		return invalidDeploymentName(d.Name)
	}
	return s.meta.Update(ctx, func(tx meta.Tx) error {
		var g Group
		if ok, err := getRecord(tx, groupKey(d.Subscription, d.Group), &g); err != nil || !ok {
			if err == nil {
				err = groupNotFound(d.Group)
			}
			return err
		}
		return putRecord(tx, deploymentKey(d.Subscription, d.Group, d.Name), d)
	})
}

// GetDeployment returns a deployment record.
func (s *Service) GetDeployment(ctx context.Context, sub, group, name string) (*Deployment, error) {
	var d Deployment
	err := s.meta.View(ctx, func(tx meta.Tx) error {
		ok, err := getRecord(tx, deploymentKey(sub, group, name), &d)
		if err != nil || ok {
			return err
		}
		var g Group
		if ok, err := getRecord(tx, groupKey(sub, group), &g); err != nil || !ok {
			if err == nil {
				err = groupNotFound(group)
			}
			return err
		}
		return notFound("DeploymentNotFound", "Deployment '%s' could not be found.", name)
	})
	if err != nil {
		return nil, err
	}
	return &d, nil
}

// ListDeployments returns a group's deployments in name order.
func (s *Service) ListDeployments(ctx context.Context, sub, group string) ([]*Deployment, error) {
	if _, err := s.GetGroup(ctx, sub, group); err != nil {
		return nil, err
	}
	var out []*Deployment
	err := s.meta.View(ctx, func(tx meta.Tx) error {
		out = out[:0]
		p := deploymentsPrefix(sub, group)
		return tx.Scan(p, prefixEnd(p), func(k, v []byte) error {
			var d Deployment
			if err := unmarshal(k, v, &d); err != nil {
				return err
			}
			out = append(out, &d)
			return nil
		})
	})
	return out, err
}

// DeleteDeployment deletes a deployment's record (not the resources it
// deployed) and reports whether it existed. A running deployment cannot be
// deleted.
func (s *Service) DeleteDeployment(ctx context.Context, sub, group, name string) (bool, error) {
	d, err := s.GetDeployment(ctx, sub, group, name)
	if err != nil {
		var se *Error
		if errors.As(err, &se) && se.Code == "DeploymentNotFound" {
			return false, nil
		}
		return false, err
	}
	if d.State == "Running" {
		return true, notAllowed("Deployment '%s' is still running; delete it once it has finished.", name)
	}
	return true, s.meta.Update(ctx, func(tx meta.Tx) error { return tx.Delete(deploymentKey(sub, group, name)) })
}

// failInterrupted marks deployments a restart interrupted as failed.
func (s *Service) failInterrupted(ctx context.Context) error {
	return s.meta.Update(ctx, func(tx meta.Tx) error {
		var stuck []Deployment
		p := []byte(keyDeployment)
		err := tx.Scan(p, prefixEnd(p), func(k, v []byte) error {
			var d Deployment
			if err := unmarshal(k, v, &d); err != nil {
				return err
			}
			if d.State == "Running" {
				stuck = append(stuck, d)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, d := range stuck {
			d.State, d.Finished = "Failed", s.now().UTC()
			d.Error = &DeploymentError{Code: "DeploymentInterrupted", Message: "The server restarted while the deployment ran; deploy again to finish it."}
			if err := putRecord(tx, deploymentKey(d.Subscription, d.Group, d.Name), &d); err != nil {
				return err
			}
		}
		return nil
	})
}
