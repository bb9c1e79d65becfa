-- Argo CD health check for events.open-metadata.org/Webhook (webhook-operator).
-- Install as argocd-cm key `resource.customizations.health.events.open-metadata.org_Webhook` (docs/gitops.md).
-- Written for Lua 5.1 (Argo CD's gopher-lua); `obj` is the live object.
--
--   Suspended    spec.enabled is false or status.status is disabled: the user turned delivery off.
--   Progressing  no status yet, or the operator has not observed the current generation (status or Ready
--                condition observedGeneration behind metadata.generation), or awaitingRetry: a retry is scheduled
--                and the Webhook heals by itself when the endpoint recovers, so it is not Degraded (yet).
--   Degraded     failed (bad URL, connection refused, redirect...) or retryLimitReached (retries exhausted:
--                needs a fix or a replay).
--   Healthy      status.status is active and the Ready condition is True for the current generation.

local hs = {}

local function readyCondition(status)
  if status == nil or status.conditions == nil then
    return nil
  end
  for _, condition in ipairs(status.conditions) do
    if condition.type == "Ready" then
      return condition
    end
  end
  return nil
end

local function conditionText(condition, fallback)
  if condition ~= nil and condition.message ~= nil and condition.message ~= "" then
    return condition.message
  end
  if condition ~= nil and condition.reason ~= nil and condition.reason ~= "" then
    return condition.reason
  end
  return fallback
end

local function behind(observed, generation)
  -- true when `observed` is known to be older than `generation`; unknown generations never count as behind
  return observed ~= nil and generation ~= nil and observed < generation
end

local spec = obj.spec or {}
local status = obj.status
local generation = nil
if obj.metadata ~= nil then
  generation = obj.metadata.generation
end

if spec.enabled == false or (status ~= nil and status.status == "disabled") then
  hs.status = "Suspended"
  hs.message = "Webhook is disabled (spec.enabled: false)"
  return hs
end

if status == nil or status.observedGeneration == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for webhook-operator to report status"
  return hs
end

if behind(status.observedGeneration, generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for webhook-operator to observe generation " .. tostring(generation)
    .. " (observed " .. tostring(status.observedGeneration) .. ")"
  return hs
end

local ready = readyCondition(status)
local state = status.status

if state == "failed" then
  hs.status = "Degraded"
  hs.message = "failed: " .. conditionText(ready, "delivery failed")
  return hs
end

if state == "retryLimitReached" then
  hs.status = "Degraded"
  hs.message = "retryLimitReached: " .. conditionText(ready, "retries exhausted")
  return hs
end

if state == "awaitingRetry" then
  hs.status = "Progressing"
  hs.message = "retrying: " .. conditionText(ready, "waiting for the next attempt")
  return hs
end

if ready == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the Ready condition"
  return hs
end

if behind(ready.observedGeneration, generation) then
  hs.status = "Progressing"
  hs.message = "Ready condition is for generation " .. tostring(ready.observedGeneration)
    .. ", waiting for generation " .. tostring(generation)
  return hs
end

if state == "active" and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = conditionText(ready, "Delivering events")
  return hs
end

hs.status = "Progressing"
hs.message = conditionText(ready, "Waiting for the Webhook to become ready")
return hs
