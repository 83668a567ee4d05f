package unattended

import (
	"sort"
	"time"
)

// windowsZones maps each Windows time zone ID to the IANA zone that stands
// for it (the "001" territory of CLDR's windowsZones). Windows only accepts
// these IDs in autounattend.xml.
var windowsZones = map[string]string{
	"Dateline Standard Time":          "Etc/GMT+12",
	"UTC-11":                          "Etc/GMT+11",
	"Aleutian Standard Time":          "America/Adak",
	"Hawaiian Standard Time":          "Pacific/Honolulu",
	"Marquesas Standard Time":         "Pacific/Marquesas",
	"Alaskan Standard Time":           "America/Anchorage",
	"UTC-09":                          "Etc/GMT+9",
	"Pacific Standard Time (Mexico)":  "America/Tijuana",
	"UTC-08":                          "Etc/GMT+8",
	"Pacific Standard Time":           "America/Los_Angeles",
	"US Mountain Standard Time":       "America/Phoenix",
	"Mountain Standard Time (Mexico)": "America/Mazatlan",
	"Mountain Standard Time":          "America/Denver",
	"Yukon Standard Time":             "America/Whitehorse",
	"Central America Standard Time":   "America/Guatemala",
	"Central Standard Time":           "America/Chicago",
	"Easter Island Standard Time":     "Pacific/Easter",
	"Central Standard Time (Mexico)":  "America/Mexico_City",
	"Canada Central Standard Time":    "America/Regina",
	"SA Pacific Standard Time":        "America/Bogota",
	"Eastern Standard Time (Mexico)":  "America/Cancun",
	"Eastern Standard Time":           "America/New_York",
	"Haiti Standard Time":             "America/Port-au-Prince",
	"Cuba Standard Time":              "America/Havana",
	"US Eastern Standard Time":        "America/Indiana/Indianapolis",
	"Turks And Caicos Standard Time":  "America/Grand_Turk",
	"Paraguay Standard Time":          "America/Asuncion",
	"Atlantic Standard Time":          "America/Halifax",
	"Venezuela Standard Time":         "America/Caracas",
	"Central Brazilian Standard Time": "America/Cuiaba",
	"SA Western Standard Time":        "America/La_Paz",
	"Pacific SA Standard Time":        "America/Santiago",
	"Newfoundland Standard Time":      "America/St_Johns",
	"Tocantins Standard Time":         "America/Araguaina",
	"E. South America Standard Time":  "America/Sao_Paulo",
	"SA Eastern Standard Time":        "America/Cayenne",
	"Argentina Standard Time":         "America/Argentina/Buenos_Aires",
	"Greenland Standard Time":         "America/Nuuk",
	"Montevideo Standard Time":        "America/Montevideo",
	"Magallanes Standard Time":        "America/Punta_Arenas",
	"Saint Pierre Standard Time":      "America/Miquelon",
	"Bahia Standard Time":             "America/Bahia",
	"UTC-02":                          "Etc/GMT+2",
	"Azores Standard Time":            "Atlantic/Azores",
	"Cape Verde Standard Time":        "Atlantic/Cape_Verde",
	"UTC":                             "Etc/UTC",
	"GMT Standard Time":               "Europe/London",
	"Greenwich Standard Time":         "Atlantic/Reykjavik",
	"Sao Tome Standard Time":          "Africa/Sao_Tome",
	"Morocco Standard Time":           "Africa/Casablanca",
	"W. Europe Standard Time":         "Europe/Berlin",
	"Central Europe Standard Time":    "Europe/Budapest",
	"Romance Standard Time":           "Europe/Paris",
	"Central European Standard Time":  "Europe/Warsaw",
	"W. Central Africa Standard Time": "Africa/Lagos",
	"Jordan Standard Time":            "Asia/Amman",
	"GTB Standard Time":               "Europe/Bucharest",
	"Middle East Standard Time":       "Asia/Beirut",
	"Egypt Standard Time":             "Africa/Cairo",
	"E. Europe Standard Time":         "Europe/Chisinau",
	"Syria Standard Time":             "Asia/Damascus",
	"West Bank Standard Time":         "Asia/Hebron",
	"South Africa Standard Time":      "Africa/Johannesburg",
	"FLE Standard Time":               "Europe/Kyiv",
	"Israel Standard Time":            "Asia/Jerusalem",
	"South Sudan Standard Time":       "Africa/Juba",
	"Kaliningrad Standard Time":       "Europe/Kaliningrad",
	"Sudan Standard Time":             "Africa/Khartoum",
	"Libya Standard Time":             "Africa/Tripoli",
	"Namibia Standard Time":           "Africa/Windhoek",
	"Arabic Standard Time":            "Asia/Baghdad",
	"Turkey Standard Time":            "Europe/Istanbul",
	"Arab Standard Time":              "Asia/Riyadh",
	"Belarus Standard Time":           "Europe/Minsk",
	"Russian Standard Time":           "Europe/Moscow",
	"E. Africa Standard Time":         "Africa/Nairobi",
	"Volgograd Standard Time":         "Europe/Volgograd",
	"Iran Standard Time":              "Asia/Tehran",
	"Arabian Standard Time":           "Asia/Dubai",
	"Astrakhan Standard Time":         "Europe/Astrakhan",
	"Azerbaijan Standard Time":        "Asia/Baku",
	"Russia Time Zone 3":              "Europe/Samara",
	"Mauritius Standard Time":         "Indian/Mauritius",
	"Saratov Standard Time":           "Europe/Saratov",
	"Georgian Standard Time":          "Asia/Tbilisi",
	"Caucasus Standard Time":          "Asia/Yerevan",
	"Afghanistan Standard Time":       "Asia/Kabul",
	"West Asia Standard Time":         "Asia/Tashkent",
	"Qyzylorda Standard Time":         "Asia/Qyzylorda",
	"Ekaterinburg Standard Time":      "Asia/Yekaterinburg",
	"Pakistan Standard Time":          "Asia/Karachi",
	"India Standard Time":             "Asia/Kolkata",
	"Sri Lanka Standard Time":         "Asia/Colombo",
	"Nepal Standard Time":             "Asia/Kathmandu",
	"Central Asia Standard Time":      "Asia/Bishkek",
	"Bangladesh Standard Time":        "Asia/Dhaka",
	"Omsk Standard Time":              "Asia/Omsk",
	"Myanmar Standard Time":           "Asia/Yangon",
	"SE Asia Standard Time":           "Asia/Bangkok",
	"Altai Standard Time":             "Asia/Barnaul",
	"W. Mongolia Standard Time":       "Asia/Hovd",
	"North Asia Standard Time":        "Asia/Krasnoyarsk",
	"N. Central Asia Standard Time":   "Asia/Novosibirsk",
	"Tomsk Standard Time":             "Asia/Tomsk",
	"China Standard Time":             "Asia/Shanghai",
	"North Asia East Standard Time":   "Asia/Irkutsk",
	"Singapore Standard Time":         "Asia/Singapore",
	"W. Australia Standard Time":      "Australia/Perth",
	"Taipei Standard Time":            "Asia/Taipei",
	"Ulaanbaatar Standard Time":       "Asia/Ulaanbaatar",
	"Aus Central W. Standard Time":    "Australia/Eucla",
	"Transbaikal Standard Time":       "Asia/Chita",
	"Tokyo Standard Time":             "Asia/Tokyo",
	"North Korea Standard Time":       "Asia/Pyongyang",
	"Korea Standard Time":             "Asia/Seoul",
	"Yakutsk Standard Time":           "Asia/Yakutsk",
	"Cen. Australia Standard Time":    "Australia/Adelaide",
	"AUS Central Standard Time":       "Australia/Darwin",
	"E. Australia Standard Time":      "Australia/Brisbane",
	"AUS Eastern Standard Time":       "Australia/Sydney",
	"West Pacific Standard Time":      "Pacific/Port_Moresby",
	"Tasmania Standard Time":          "Australia/Hobart",
	"Vladivostok Standard Time":       "Asia/Vladivostok",
	"Lord Howe Standard Time":         "Australia/Lord_Howe",
	"Bougainville Standard Time":      "Pacific/Bougainville",
	"Russia Time Zone 10":             "Asia/Srednekolymsk",
	"Magadan Standard Time":           "Asia/Magadan",
	"Norfolk Standard Time":           "Pacific/Norfolk",
	"Sakhalin Standard Time":          "Asia/Sakhalin",
	"Central Pacific Standard Time":   "Pacific/Guadalcanal",
	"Russia Time Zone 11":             "Asia/Kamchatka",
	"New Zealand Standard Time":       "Pacific/Auckland",
	"UTC+12":                          "Etc/GMT-12",
	"Fiji Standard Time":              "Pacific/Fiji",
	"Chatham Islands Standard Time":   "Pacific/Chatham",
	"UTC+13":                          "Etc/GMT-13",
	"Tonga Standard Time":             "Pacific/Tongatapu",
	"Samoa Standard Time":             "Pacific/Apia",
	"Line Islands Standard Time":      "Pacific/Kiritimati",
}

// ianaToWindows names the Windows zone of IANA zones whose clock several
// Windows zones share, so that Windows shows the expected region name.
var ianaToWindows = map[string]string{
	"UTC": "UTC", "Etc/GMT": "UTC", "GMT": "UTC", "Etc/Universal": "UTC", "Etc/Zulu": "UTC",
	"Europe/Madrid": "Romance Standard Time", "Europe/Brussels": "Romance Standard Time",
	"Europe/Copenhagen": "Romance Standard Time",
	"Europe/Amsterdam":  "W. Europe Standard Time", "Europe/Rome": "W. Europe Standard Time",
	"Europe/Vienna": "W. Europe Standard Time", "Europe/Zurich": "W. Europe Standard Time",
	"Europe/Stockholm": "W. Europe Standard Time", "Europe/Oslo": "W. Europe Standard Time",
	"Europe/Luxembourg": "W. Europe Standard Time", "Europe/Monaco": "W. Europe Standard Time",
	"Europe/Prague": "Central Europe Standard Time", "Europe/Belgrade": "Central Europe Standard Time",
	"Europe/Bratislava": "Central Europe Standard Time", "Europe/Ljubljana": "Central Europe Standard Time",
	"Europe/Zagreb": "Central European Standard Time", "Europe/Sarajevo": "Central European Standard Time",
	"Europe/Lisbon": "GMT Standard Time", "Europe/Dublin": "GMT Standard Time", "Atlantic/Canary": "GMT Standard Time",
	"Europe/Athens": "GTB Standard Time", "Europe/Helsinki": "FLE Standard Time", "Europe/Kiev": "FLE Standard Time",
	"Europe/Riga": "FLE Standard Time", "Europe/Vilnius": "FLE Standard Time", "Europe/Tallinn": "FLE Standard Time",
	"Europe/Sofia":    "FLE Standard Time",
	"America/Toronto": "Eastern Standard Time", "America/Detroit": "Eastern Standard Time",
	"America/Vancouver": "Pacific Standard Time", "America/Edmonton": "Mountain Standard Time",
	"America/Winnipeg": "Central Standard Time", "America/Lima": "SA Pacific Standard Time",
	"America/Buenos_Aires": "Argentina Standard Time", "America/Indianapolis": "US Eastern Standard Time",
	"America/Godthab": "Greenland Standard Time",
	"Asia/Calcutta":   "India Standard Time", "Asia/Katmandu": "Nepal Standard Time", "Asia/Rangoon": "Myanmar Standard Time",
	"Asia/Hong_Kong": "China Standard Time", "Asia/Macau": "China Standard Time",
	"Asia/Jakarta": "SE Asia Standard Time", "Asia/Ho_Chi_Minh": "SE Asia Standard Time",
	"Asia/Manila": "Singapore Standard Time", "Asia/Kuala_Lumpur": "Singapore Standard Time",
	"Australia/Melbourne": "AUS Eastern Standard Time", "Australia/Canberra": "AUS Eastern Standard Time",
	"Africa/Abidjan": "Greenwich Standard Time", "Africa/Accra": "Greenwich Standard Time",
	"Africa/Algiers": "W. Central Africa Standard Time", "Africa/Tunis": "W. Central Africa Standard Time",
	"Asia/Kuwait": "Arab Standard Time", "Asia/Qatar": "Arab Standard Time",
	"Asia/Muscat": "Arabian Standard Time", "Asia/Almaty": "Central Asia Standard Time",
}

// windowsZone returns the Windows zone ID for tz, which is a Windows ID or
// an IANA zone. IANA zones outside the tables get the first Windows zone,
// in name order, whose clock matches at 48 instants of a fixed year: the
// clock is then right even when Windows shows a neighbour's name.
func windowsZone(tz string) (string, bool) {
	if _, ok := windowsZones[tz]; ok {
		return tz, true
	}
	if id, ok := ianaToWindows[tz]; ok {
		return id, true
	}
	for id, iana := range windowsZones {
		if iana == tz {
			return id, true
		}
	}
	if !ianaZone(tz) {
		return "", false
	}
	loc, err := time.LoadLocation(tz)
	if err != nil {
		return "", false
	}
	ids := make([]string, 0, len(windowsZones))
	for id := range windowsZones {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		cand, err := time.LoadLocation(windowsZones[id])
		if err == nil && sameClock(loc, cand) {
			return id, true
		}
	}
	return "", false
}

func sameClock(a, b *time.Location) bool {
	for m := time.January; m <= time.December; m++ {
		for _, d := range []int{1, 8, 15, 22} {
			t := time.Date(2025, m, d, 12, 0, 0, 0, time.UTC)
			_, oa := t.In(a).Zone()
			_, ob := t.In(b).Zone()
			if oa != ob {
				return false
			}
		}
	}
	return true
}
