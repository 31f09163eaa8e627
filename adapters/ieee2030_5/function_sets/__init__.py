"""The 2030.5 function sets this server implements (EndDevice, FunctionSetAssignments and DER
programs, Subscription/Notification) and its Security edge (certificate -> scope, listener)."""
