-- Argo CD health of an infleet.io LoRAAdapter (resource.customizations.health.infleet.io_LoRAAdapter).
-- Argo CD runs this with the live object as `obj` and reads the returned table's status and message.
-- Stale status first (it describes an older spec), then a refusal (Degraded: the adapter will not be
-- served until its spec or its service changes), then served everywhere, else still loading.

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
  if ready == nil then
    return "Progressing", "Waiting for the Ready condition"
  end
  if ready.status == "True" then
    return "Healthy", describe(ready)
  end
  -- Fetching (a pvc:// upload Job runs), Loading on a new replica, or no ready replica
  -- yet: the operator keeps going.
  return "Progressing", describe(ready)
end

local hs = {}
hs.status, hs.message = health(obj)
return hs
