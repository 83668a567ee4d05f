package api

// AttachPCIRequest is the body of POST /v1/vms/{id}/pci: a host PCI
// device passed through to a VM that is off. The other functions of its
// slot in its IOMMU group (a GPU's audio function) go with it; DELETE
// /v1/vms/{id}/pci/{dev} takes them all off again. The answer is the
// VM's new device entry.
type AttachPCIRequest struct {
	// Address is the device's PCI address: 0000:01:00.0, or 01:00.0 on
	// domain 0.
	Address string `json:"address"`
	// Name is the device's name; empty takes the lowest free pciN.
	Name string `json:"name,omitempty"`
	// Managed binds the devices to vfio-pci at each start and gives them
	// back to their drivers at each stop; otherwise they must be on
	// vfio-pci already.
	Managed bool `json:"managed,omitempty"`
	// ROMFile is an option ROM for the device: a file of the agent's ROM
	// directory, by its name there or its absolute path.
	ROMFile string `json:"romFile,omitempty"`
}
