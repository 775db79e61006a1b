package engine

// PolicyContacts exposes policyContacts to the external tests.
var PolicyContacts = policyContacts
