package arm

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/deltadisk/deltadisk/internal/engine"
	"github.com/deltadisk/deltadisk/internal/identity"
)

// Admin endpoints run maintenance inside the server, which holds the
// embedded store's lock: POST /deltadisk/admin/check (?readData=true; the
// engine's check, and the service's under "service"),
// POST /deltadisk/admin/gc and POST /deltadisk/admin/scrub (?repair=true). They need the Owner role on the server's
// default subscription, the one credentials.json names.

func (c *call) admin(action string) error {
	if _, err := c.apiVersion(minComputeVersion); err != nil {
		return err
	}
	subs := c.h.svc.Subscriptions()
	if role, ok := c.caller.Role(subs[0].ID); !ok || role != identity.RoleOwner {
		return errorf(http.StatusForbidden, "AuthorizationFailed",
			"The client '%s' is not Owner of subscription '%s'; deltadisk's admin actions need that role.", c.caller.ClientID, subs[0].ID)
	}
	ctx := c.r.Context()
	eng := c.h.svc.Engine()
	switch action {
	case "check":
		readData, _ := strconv.ParseBool(c.r.URL.Query().Get("readData"))
		rep, err := eng.Check(ctx, engine.CheckOptions{ReadData: readData})
		if err != nil {
			return err
		}
		problems := rep.Problems
		if problems == nil {
			problems = []string{}
		}
		// The engine's check looks inside the images; the service's, at the
		// records around them and at which images they hold.
		srep, err := c.h.svc.Check(ctx)
		if err != nil {
			return err
		}
		writeJSON(c.w, http.StatusOK, map[string]any{
			"images": rep.Images, "lineages": rep.Lineages, "mapEntries": rep.MapEntries,
			"chunks": rep.Chunks, "packs": rep.Packs, "readData": readData, "problems": problems,
			"service": srep,
		})
	case "gc":
		st, err := eng.GC(ctx, engine.DefaultGCOptions())
		if err != nil {
			return err
		}
		writeJSON(c.w, http.StatusOK, map[string]any{
			"chunksFreed": st.ChunksFreed, "packsDeleted": st.PacksDeleted,
			"packsCompacted": st.PacksCompacted, "bytesFreed": st.BytesFreed,
		})
	case "scrub":
		repair, _ := strconv.ParseBool(c.r.URL.Query().Get("repair"))
		rep, err := eng.Scrub(ctx, engine.ScrubOptions{Repair: repair})
		if err != nil {
			return err
		}
		zones := make([]map[string]any, len(rep.Zones))
		for i, z := range rep.Zones {
			zones[i] = map[string]any{"zone": z.Zone, "packs": z.Packs, "copies": z.Copies,
				"missing": z.Missing, "corrupt": z.Corrupt, "unplaced": z.Unplaced, "repaired": z.Repaired}
		}
		problems := rep.Problems
		if problems == nil {
			problems = []string{}
		}
		writeJSON(c.w, http.StatusOK, map[string]any{
			"repair": repair, "copies": rep.Copies, "missing": rep.Missing, "corrupt": rep.Corrupt, "unplaced": rep.Unplaced,
			"repaired": rep.Repaired, "unrecoverable": rep.Unrecoverable, "zones": zones, "problems": problems,
		})
	default:
		return errorf(http.StatusNotFound, "NotFound", "No admin action '%s'; deltadisk has check, gc and scrub.", strings.ToLower(action))
	}
	return nil
}
