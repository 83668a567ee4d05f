package api

// PCIClass is what a host PCI device is, from its class code.
type PCIClass string

// The classes of host PCI devices.
const (
	PCIClassGPU     PCIClass = "gpu"     // display controller
	PCIClassAudio   PCIClass = "audio"   // audio device, such as a GPU's HDMI audio function
	PCIClassNIC     PCIClass = "nic"     // network controller
	PCIClassUSB     PCIClass = "usb"     // USB controller
	PCIClassBridge  PCIClass = "bridge"  // host, ISA, PCI or other bridge
	PCIClassStorage PCIClass = "storage" // mass storage controller (SATA, NVMe)
	PCIClassOther   PCIClass = "other"
)

// HostPCI is the answer of GET /v1/host/pci: the host's PCI devices.
type HostPCI struct {
	// IOMMU says whether the host's IOMMU is on. While it is off, no
	// device has an IOMMU group and none can be passed through.
	IOMMU   bool            `json:"iommu"`
	Devices []HostPCIDevice `json:"devices"`
}

// HostPCIDevice is one PCI function of the host.
type HostPCIDevice struct {
	// Address is the function's full address: 0000:01:00.0.
	Address string `json:"address"`
	// VendorID is the vendor's id, four lower-case hex digits (10de).
	VendorID string `json:"vendorId"`
	// DeviceID is the device's id, four lower-case hex digits (1b80).
	DeviceID string `json:"deviceId"`
	// Vendor is the vendor's name in the host's pci.ids database; empty
	// when it lacks it or is not installed.
	Vendor string `json:"vendor"`
	// Device is the device's name in pci.ids, or empty.
	Device string `json:"device"`
	// ClassCode is the class, subclass and programming interface as six
	// hex digits (030000).
	ClassCode string `json:"classCode"`
	// ClassName is the subclass's name in pci.ids (VGA compatible
	// controller), or empty.
	ClassName string   `json:"className"`
	Class     PCIClass `json:"class"`
	// IOMMUGroup is the device's IOMMU group, whose /dev/vfio node QEMU
	// opens; empty while the IOMMU is off.
	IOMMUGroup string `json:"iommuGroup,omitempty"`
	// GroupMembers are the addresses of every device of the group, this
	// one included, as a group goes to one VM as a whole; empty while the
	// IOMMU is off.
	GroupMembers []string `json:"groupMembers"`
	// Driver is the kernel driver bound to it; empty when none is.
	Driver string `json:"driver"`
	// VFIO says it is bound to vfio-pci, as passthrough needs.
	VFIO bool `json:"vfio"`
	// UsedBy is the VM the device is passed through to, if any.
	UsedBy *DeviceUser `json:"usedBy,omitempty"`
}

// DeviceUser is a VM's device entry that holds a host device.
type DeviceUser struct {
	VMID   string `json:"vmId"`
	VMName string `json:"vmName"`
	// Device is the entry's name in the VM (pci0).
	Device string `json:"device"`
}

// HostUSB is the answer of GET /v1/host/usb: the USB devices plugged into
// the host, root hubs left out.
type HostUSB struct {
	Devices []HostUSBDevice `json:"devices"`
}

// HostUSBDevice is one USB device of the host.
type HostUSBDevice struct {
	// BusPort is where it is plugged, as the kernel names it: 1-1.2 is
	// bus 1, port 2 of the hub on port 1.
	BusPort string `json:"busPort"`
	// Bus is the bus number (1 in 1-1.2).
	Bus int `json:"bus"`
	// Port is the port path on the bus (1.2 in 1-1.2).
	Port string `json:"port"`
	// DeviceNumber is its number on the bus, which changes at each plug.
	DeviceNumber int `json:"deviceNumber"`
	// VendorID is the vendor's id, four lower-case hex digits (046d).
	VendorID string `json:"vendorId"`
	// ProductID is the product's id, four lower-case hex digits (c52b).
	ProductID string `json:"productId"`
	// Vendor is the vendor's name in the host's usb.ids database, or else
	// the device's own manufacturer string.
	Vendor string `json:"vendor"`
	// Product is the product's name in usb.ids, or else the device's own
	// product string.
	Product string `json:"product"`
	// Serial is the device's serial number string, when it has one.
	Serial string `json:"serial,omitempty"`
	// Hub says it is a hub: the devices on its ports are listed apart.
	Hub bool `json:"hub"`
	// UsedBy is the VM whose USB entry takes the device, if any.
	UsedBy *DeviceUser `json:"usedBy,omitempty"`
}
