package quant

// Algorithm is a recipe's calibration algorithm.
type Algorithm struct {
	// Method is the algorithm name; ptqgate supports "max" only.
	Method string
	// Layerwise calibrates one decoder layer at a time
	// (algorithm.layerwise.enable, or the older layerwise: true).
	Layerwise bool
	// SkipForwardWithoutActivationCalib skips the calibration forward when no
	// enabled activation quantizer needs data (ModelOpt HEAD option).
	SkipForwardWithoutActivationCalib bool
}

// String writes the algorithm as reports show it: "max" or "max (layerwise)".
func (a Algorithm) String() string {
	if a.Layerwise {
		return a.Method + " (layerwise)"
	}
	return a.Method
}

// Recipe is a loaded recipe: the ordered quant_cfg entries and the algorithm.
type Recipe struct {
	// Name is the preset's canonical name, or the file's base name without
	// extension.
	Name string
	// Source is "preset" or the recipe file's path.
	Source string
	// Algorithm is the calibration algorithm.
	Algorithm Algorithm
	// Entries are the quant_cfg entries in application order, imports
	// resolved, legacy formats converted.
	Entries []Entry
	// Description is metadata.description (one line for presets).
	Description string
}

// Entry is one quant_cfg entry (ModelOpt's QuantizerCfgEntry).
type Entry struct {
	// QuantizerName is the fnmatch pattern.
	QuantizerName string
	// ParentClass restricts matches to quantizers whose owning module has
	// this class ("nn.Linear"); "" for any.
	ParentClass string
	// Cfg replaces the matched quantizers' whole configuration; nil for an
	// entry that only toggles enable.
	Cfg *Config
	// Enable is the entry's enable (default true).
	Enable bool
	// Origin says where the entry comes from, e.g. "recipe.yaml entry 3" or
	// "preset nvfp4_default-fp8_kv entry 3", with the unit file it was
	// imported from when there is one.
	Origin string
}

// Describe names the entry for messages: its pattern, parent class and origin.
func (e Entry) Describe() string {
	s := "'" + e.QuantizerName + "'"
	if e.ParentClass != "" {
		s += " (parent_class " + e.ParentClass + ")"
	}
	if e.Origin != "" {
		s += " [" + e.Origin + "]"
	}
	return s
}
