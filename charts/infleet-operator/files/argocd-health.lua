-- Argo CD health of an infleet.io InferenceService (resource.customizations.health.infleet.io_InferenceService).
-- Argo CD runs this with the live object as `obj` and reads the returned table's status and message.
-- Order matters: stale status first (it describes an older spec), then failure, then a deliberate
-- zero, then rollout, then readiness.

local function condition(status, type_)
  if status == nil or status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == type_ then
      return c
    end
  end
  return nil
end

-- "Reason: message", or whichever of the two is set.
local function describe(c)
  local reason = c.reason or ""
  local message = c.message or ""
  if reason ~= "" and message ~= "" then
    return reason .. ": " .. message
  end
  if message ~= "" then
    return message
  end
  return reason
end

-- Why the service runs zero replicas by choice, or nil. The operator says so with
-- Ready=True, reason ScaledToZero (no replica desired: spec.replicas 0, or scaling.minReplicas 0
-- and the autoscaler wants none: the message says which); only once status shows zero replicas, as while they drain
-- the service is Progressing.
local function suspended_reason(spec, status, ready)
  if ready == nil or ready.reason ~= "ScaledToZero" or (status.replicas or 0) ~= 0 then
    return nil
  end
  if spec.replicas == 0 then
    return "Scaled to zero by spec.replicas: 0 (kubectl scale); scale up to resume"
  end
  return describe(ready)
end

local function health(obj)
  local status = obj.status
  local generation = obj.metadata and obj.metadata.generation
  if status == nil or status.observedGeneration == nil then
    return "Progressing", "Waiting for the infleet operator to report status"
  end
  if generation ~= nil and status.observedGeneration ~= generation then
    return "Progressing", string.format(
      "Waiting for the operator to observe generation %d (status is for %d)",
      generation, status.observedGeneration)
  end
  local degraded = condition(status, "Degraded")
  if degraded ~= nil and degraded.status == "True" then
    return "Degraded", describe(degraded)
  end
  local ready = condition(status, "Ready")
  local why_zero = suspended_reason(obj.spec or {}, status, ready)
  if why_zero ~= nil then
    return "Suspended", why_zero
  end
  local progressing = condition(status, "Progressing")
  if progressing ~= nil and progressing.status == "True" then
    return "Progressing", describe(progressing)
  end
  if ready == nil then
    return "Progressing", "Waiting for the Ready condition"
  end
  if ready.status == "True" then
    return "Healthy", describe(ready)
  end
  if ready.status ~= "False" then
    return "Progressing", describe(ready)
  end
  -- Not ready and no longer progressing: the operator gave up waiting, so the reason is a failure.
  return "Degraded", describe(ready)
end

local hs = {}
hs.status, hs.message = health(obj)
return hs
