/* covgap planner map: layers, legend, popups, scorecard panel and village search.
 *
 * The page data is the JSON block #covgap-data (written by covgap/maps.py), merged, when the pages
 * share their assets, with window.covgapShared (assets/data-*.js: words, page list, commune outlines). Every
 * string from the input data goes into the DOM with textContent or as an attribute
 * value set through the DOM, never as HTML. Labels from the language dictionary
 * (D.strings) are the only text Leaflet's layer control receives.
 */
(function () {
  'use strict';

  var COLOURS = {
    meets: '#1a9641', fails: '#d7191c', insufficient: '#9e9e9e',
    fibreMeets: '#08519c', fibreMid: '#4292c6', fibreLow: '#c6dbef', fibreNone: '#ffffff',
    dead: '#b2182b', no4g: '#c51b7d', needs: '#6a51a3', fibreExisting: '#e66101', fibrePlanned: '#e66101',
    commune: '#222222', reached: '#1a9641', notReached: '#d7191c', planChosen: '#00695c', planOther: '#4db6ac',
    drive: ['#1f78b4', '#6a3d9a', '#e31a1c', '#33a02c', '#01665e', '#b15928'],
    cellCovered: '#1a9641', cellWeak: '#fdae61', cellNo4g: '#c51b7d', cellNoService: '#d7191c', cellInsufficient: '#969696',
    contextRoad: '#9c8f7a', contextRiver: '#6baed6', contextPlace: '#444444'
  };

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (k) {
        if (k === 'text') { node.textContent = attrs[k]; }
        else if (k === 'className') { node.className = attrs[k]; }
        else if (k === 'style') { node.style.cssText = attrs[k]; }
        else { node.setAttribute(k, attrs[k]); }
      });
    }
    (children || []).forEach(function (c) {
      if (c === null || c === undefined) { return; }
      node.appendChild(typeof c === 'string' ? document.createTextNode(c) : c);
    });
    return node;
  }

  function fold(text) {
    // Accent-insensitive search key: 'Nghĩa Điền' -> 'nghia dien'.
    return String(text).replace(/[đĐ]/g, 'd').normalize('NFD').replace(/[\u0300-\u036f]/g, '')
      .toLowerCase().replace(/\s+/g, ' ').trim();
  }

  window.covgapStart = function (map) {
    var D = JSON.parse(document.getElementById('covgap-data').textContent);
    if (D.shared) {
      // Shared mode ([output] map_assets): what every page has in common came from assets/ (window.covgapShared).
      var S = window.covgapShared;
      if (!S) { throw new Error('covgap: the shared data of the maps (assets/) did not load'); }
      Object.keys(S).forEach(function (k) { if (k !== 'layers') { D[k] = S[k]; } });
      Object.keys(S.layers).forEach(function (k) { D.layers[k] = S.layers[k]; });
    }
    // Each layer comes packed (covgap/mappage.py pack_layers): property names once, a row of values per feature.
    function unpack(fc) {
      if (!fc || !fc.keys) { return fc; }
      return { type: 'FeatureCollection', features: fc.rows.map(function (row, i) {
        var p = {};
        fc.keys.forEach(function (k, j) { if (row[j] !== null) { p[k] = row[j]; } });
        return { type: 'Feature', properties: p, geometry: fc.geometries[i] };
      }) };
    }
    Object.keys(D.layers).forEach(function (k) { D.layers[k] = unpack(D.layers[k]); });
    var T = D.strings;
    var LOCALE = D.lang === 'vi' ? 'vi-VN' : 'en-GB';
    document.documentElement.lang = D.lang;

    function fill(template, values) {
      return template.replace(/\{(\w+)\}/g, function (m, k) { return values[k] === undefined ? m : values[k]; });
    }
    function missing(x) { return x === null || x === undefined || (typeof x === 'number' && !isFinite(x)); }
    function num(x, digits) {
      if (missing(x)) { return T.unknown; }
      var d = digits || 0;
      return Number(x).toLocaleString(LOCALE, { minimumFractionDigits: d, maximumFractionDigits: d });
    }
    function pct(x) { return missing(x) ? T.unknown : num(x * 100, 1) + '%'; }
    function metres(x) {
      if (missing(x)) { return T.unknown; }
      return x >= 1000 ? num(x / 1000, 1) + ' km' : num(x, 0) + ' m';
    }
    function verdictKey(v) { return v === 'meets' ? 'meets' : v === 'fails' ? 'fails' : 'insufficient'; }
    function verdictLabel(v) { return T['verdict_' + v] || String(v); }
    function fibreColour(share) {
      if (missing(share)) { return COLOURS.insufficient; }
      if (share > D.goal_share + 1e-12) { return COLOURS.fibreMeets; }
      if (share >= 0.5) { return COLOURS.fibreMid; }
      if (share > 0) { return COLOURS.fibreLow; }
      return COLOURS.fibreNone;
    }
    function isPlanned(p) { return String(p.status).toLowerCase() === 'planned'; }

    // ------------------------------------------------------------------ popups
    function popupTable(title, subtitle, rows, extra) {
      var body = el('tbody', null, rows.filter(function (r) { return r; }).map(function (r) {
        return el('tr', null, [el('th', { text: r[0] }), el('td', null, [r[1]])]);
      }));
      return el('div', { className: 'covgap-popup' }, [
        el('h3', { text: title }),
        subtitle ? el('div', { className: 'covgap-sub', text: subtitle }) : null,
        el('table', null, [body]),
        extra || null
      ]);
    }
    function swatchText(colour, text) {
      return el('span', null, [el('span', { className: 'covgap-dot', style: 'background:' + colour }), text]);
    }
    function villagePopup(p) {
      var rows = [
        [T.households, num(p.households)],
        [T.verdict_4g, swatchText(COLOURS[verdictKey(p.verdict_4g)], verdictLabel(p.verdict_4g))],
        [T.evidence_share, pct(p.evidence_share)],
        [T.share_covered, pct(p.share_covered)],
        [T.share_weak, pct(p.share_weak)],
        [T.share_no_4g, pct(p.share_no_4g)],
        [T.share_dead, pct(p.share_dead)],
        [T.share_unmeasured, pct(p.share_unmeasured)],
        [T.households_in_dead_zones, num(p.households_in_dead_zones)],
        [T.n_samples, num(p.n_samples)],
        [T.last_measured, p.last_measured || T.unknown],
        [T.fibre_share, swatchText(fibreColour(p.fibre_share), pct(p.fibre_share) + ' (' + num(p.households_passed) + '/' + num(p.households) + ')')],
        [T.dist_to_fibre_m, metres(p.dist_to_fibre_m)],
        [T.spur_length_m, metres(p.spur_length_m)],
        missing(p.dist_to_planned_fibre_m) ? null : [T.dist_to_planned_fibre_m, metres(p.dist_to_planned_fibre_m)],
        missing(p.subscribed_share) ? null : [T.subscribed_share, pct(p.subscribed_share)]
      ];
      return popupTable(p.name, T.commune + ': ' + p.commune, rows);
    }
    function dbm(x) { return missing(x) ? '—' : num(x) + ' dBm'; }
    function zoneOperatorText(o, kind) {
      // Each figure is the one the zone's class was decided on (DESIGN.md §3.3): a no-4G zone leads with its
      // usable 3G/2G level, a dead zone with every technology's median, all below their usable levels.
      var parts = kind === 'no4g'
        ? [T.median_rscp + ' ' + dbm(o.rscp_dbm_p50), missing(o.rxlev_dbm_p50) ? null : T.median_rxlev + ' ' + dbm(o.rxlev_dbm_p50),
          pct(o.share_4g) + ' ' + T.share_4g_samples]
        : [T.median_rsrp + ' ' + dbm(o.rsrp_dbm_p50), T.median_rscp + ' ' + dbm(o.rscp_dbm_p50),
          missing(o.rxlev_dbm_p50) ? null : T.median_rxlev + ' ' + dbm(o.rxlev_dbm_p50)];
      parts.push(num(o.n_samples) + ' ' + T.n_samples.toLowerCase() + ', ' + num(o.n_cells) + ' ' + T.cells_measured);
      return parts.filter(function (x) { return x; }).join(', ');
    }
    function zonePopup(p, kind) {
      var rows = [
        [T.area_km2, num(p.area_km2, 2) + ' km²'],
        [T.villages, p.villages || '—'],
        [T.households, num(p.households)],
        [T.n_samples, num(p.n_samples)],
        [T.first_measured, p.first_measured || T.unknown],
        [T.last_measured, p.last_measured || T.unknown]
      ];
      (p.operators || []).forEach(function (o) { rows.push([T.operator + ': ' + o.operator, zoneOperatorText(o, kind)]); });
      return popupTable((kind === 'no4g' ? T.zone_no4g : T.zone) + ' ' + p.zone_id, kind === 'no4g' ? T.no4g_zone : T.dead_zone, rows);
    }
    function communeRows(p) {
      return [
        [T.villages_4g, num(p.villages_meeting_4g) + '/' + num(p.n_villages) + ' (' + pct(p.share_villages_4g) + ')'],
        [T.dead_zones, num(p.dead_zones) + ' (' + num(p.dead_zone_area_km2, 2) + ' km²)'],
        [T.households_in_dead_zones, num(p.households_in_dead_zones)],
        [T.fibre_share, pct(p.fibre_share) + ' (' + num(p.households_passed) + '/' + num(p.households) + ')'],
        [T.centre, p.communes_reached ? T.reached : T.not_reached],
        [T.centre_dist, metres(p.centre_dist_to_fibre_m)],
        [T.evidence_share, pct(p.evidence_share)]
      ];
    }
    function communeLink(p) {
      if (p.file === D.file) { return null; }
      return el('a', { href: p.file, className: 'covgap-link', text: T.open_commune + ' →' });
    }
    function communePopup(p) { return popupTable(T.commune + ': ' + p.name, null, communeRows(p), communeLink(p)); }
    function centrePopup(p) {
      return popupTable(T.centre + ': ' + p.name, null, [
        [T.status_route, swatchText(p.reached ? COLOURS.reached : COLOURS.notReached, p.reached ? T.reached : T.not_reached)],
        [T.centre_dist, metres(p.centre_dist_to_fibre_m)]
      ], communeLink(p));
    }
    function needsPopup(p) {
      return popupTable(T.needs_measurement, T.village + ': ' + p.name, [
        [T.area_km2, num(p.area_km2, 2) + ' km²'], [T.households, num(p.households)]]);
    }
    function fibrePopup(p) {
      return popupTable(T.layer_fibre, null, [
        [T.status_route, isPlanned(p) ? T.planned : T.existing],
        p.operator ? [T.operator, p.operator] : null,
        missing(p.year) ? null : [T.year, String(p.year)]
      ]);
    }

    function money(x) { return missing(x) ? T.unknown : num(x) + ' ' + T.currency; }
    function inPlan(p) { return D.kind === 'district' ? !!p.in_district_plan : !!p.in_unit_plan; }
    function fibrePlanPopup(p) {
      return popupTable(T.fibre_plan + ': ' + p.name, T.commune + ': ' + p.commune, [
        [T.households, num(p.households)],
        [T.households_gained, num(p.households_gained)],
        [T.spur_length_m, metres(p.spur_length_m)],
        [T.spur_along, p.spur_along === 'roads' ? T.along_roads : T.along_straight],
        [T.cost, money(p.cost_vnd)],
        [T.cost_per_household, money(p.cost_vnd_per_household)],
        [T.route_from, p.route_id + (p.route_operator ? ' (' + p.route_operator + ')' : '')],
        [T.in_plan, swatchText(inPlan(p) ? COLOURS.planChosen : COLOURS.planOther, inPlan(p) ? T.yes : T.no)]
      ]);
    }

    function dayColour(day) { return COLOURS.drive[(Number(day) - 1) % COLOURS.drive.length]; }
    function measurementPopup(p) {
      if (p.kind === 'route') {
        return popupTable(T.layer_measurement_plan, T.day + ' ' + p.day, [[T.km, metres(p.km * 1000)], [T.waypoints, num(p.waypoints)]]);
      }
      return popupTable(T.waypoint + ' ' + p.day + '-' + p.seq, T.village + ': ' + p.name, [
        [T.day, String(p.day)], [T.commune, p.commune], [T.households_in_cell, num(p.households_in_cell, 1)]]);
    }

    // ------------------------------------------------------------------ layers
    // Context layers ([inputs] context) first: drawn under every result.
    var CONTEXT = ['context_rivers', 'context_roads', 'context_places'];
    var ORDER = CONTEXT.concat(['cells', 'communes', 'villages_fibre', 'villages_4g', 'needs_measurement', 'no4g_zones', 'dead_zones', 'fibre_plan', 'fibre', 'measurement_plan', 'centres']);
    ORDER.forEach(function (key, i) {
      var pane = map.createPane('covgap-' + key);
      pane.style.zIndex = String(320 + 10 * i);
      pane.classList.add('covgap-pane-' + key);
    });
    function tooltip(text) { return el('span', { text: text }); }
    // A village given as a point is a disc of radius_m metres on the ground (covgap/maps.py sends its centre
    // and radius): an L.circle, whose bounds do not need the map (the layer may be off when a search zooms).
    var Disc = L.Circle.extend({
      getBounds: function () { return this.getLatLng().toBounds(2 * this.getRadius()); }
    });
    function vector(key, fc, style, popup, tip, pointStyle) {
      return L.geoJSON(fc, {
        pane: 'covgap-' + key,
        style: style,
        pointToLayer: function (f, latlng) {
          if (f.properties.radius_m) { return new Disc(latlng, { pane: 'covgap-' + key, radius: f.properties.radius_m }); }
          return L.circleMarker(latlng, Object.assign({ pane: 'covgap-' + key }, pointStyle ? pointStyle(f) : {}));
        },
        onEachFeature: function (f, layer) {
          layer.feature = f;
          layer.bindPopup(function () { return popup(f.properties); }, { maxWidth: 360 });
          if (tip) { layer.bindTooltip(function () { return tooltip(tip(f.properties)); }, { sticky: true }); }
        }
      });
    }
    var L_ = D.layers;
    // Context: no popup; a road's or river's name on hover, a place's name beside its dot (text, never HTML).
    function contextLayer(key, style, labelled) {
      return L.geoJSON(L_[key] || { type: 'FeatureCollection', features: [] }, {
        pane: 'covgap-' + key, style: style, interactive: !!labelled,
        pointToLayer: function (f, latlng) {
          return L.circleMarker(latlng, { pane: 'covgap-' + key, radius: 2.5, color: COLOURS.contextPlace, weight: 1,
            fillColor: COLOURS.contextPlace, fillOpacity: 1 });
        },
        onEachFeature: function (f, layer) {
          if (!f.properties.label) { return; }
          var permanent = key === 'context_places';
          layer.bindTooltip(tooltip(f.properties.label), permanent
            ? { permanent: true, direction: 'right', offset: [4, 0], className: 'covgap-place-label', pane: 'covgap-' + key }
            : { sticky: true });
        }
      });
    }
    // A village with no measured cell needs measuring whole: its area comes without a geometry and is the
    // village's own outline (sent once, in the villages layer), with the village's name, commune and households.
    var villageOf = {};
    L_.villages.features.forEach(function (f) { villageOf[f.properties.village_id] = f; });
    L_.needs_measurement.features.forEach(function (f) {
      var v = f.properties.whole_village ? villageOf[f.properties.village_id] : null;
      if (!f.geometry && v) {
        f.geometry = v.geometry;
        ['name', 'commune', 'households', 'radius_m'].forEach(function (k) {
          if (f.properties[k] === undefined) { f.properties[k] = v.properties[k]; }
        });
      }
    });
    var layers = {
      context_rivers: contextLayer('context_rivers', function () {
        return { color: COLOURS.contextRiver, weight: 2, opacity: 0.8, fillColor: COLOURS.contextRiver, fillOpacity: 0.35 };
      }, true),
      context_roads: contextLayer('context_roads', function () { return { color: COLOURS.contextRoad, weight: 1.5, opacity: 0.9 }; }, true),
      context_places: contextLayer('context_places', null, true),
      communes: vector('communes', L_.communes, function (f) {
        var own = f.properties.name === D.name && D.kind === 'commune';
        return { color: COLOURS.commune, weight: own ? 3.5 : 2, opacity: own ? 1 : 0.7, fill: true, fillOpacity: 0, dashArray: own ? null : '6 4' };
      }, communePopup, function (p) { return p.name; }),
      villages_4g: vector('villages_4g', L_.villages, function (f) {
        return { color: '#333', weight: 0.8, fillColor: COLOURS[verdictKey(f.properties.verdict_4g)], fillOpacity: 0.45 };
      }, villagePopup, function (p) { return p.name; }),
      villages_fibre: vector('villages_fibre', L_.villages, function (f) {
        return { color: '#333', weight: 0.8, fillColor: fibreColour(f.properties.fibre_share), fillOpacity: 0.6 };
      }, villagePopup, function (p) { return p.name; }),
      dead_zones: vector('dead_zones', L_.dead_zones, function () {
        return { color: COLOURS.dead, weight: 1.5, fillColor: COLOURS.dead, fillOpacity: 0.55 };
      }, function (p) { return zonePopup(p, 'dead'); }, function (p) { return T.zone + ' ' + p.zone_id; }),
      no4g_zones: vector('no4g_zones', L_.no4g_zones, function () {
        return { color: COLOURS.no4g, weight: 1.5, fillColor: COLOURS.no4g, fillOpacity: 0.4, dashArray: '5 3' };
      }, function (p) { return zonePopup(p, 'no4g'); }, function (p) { return T.zone_no4g + ' ' + p.zone_id; }),
      needs_measurement: vector('needs_measurement', L_.needs_measurement, function () {
        return { color: COLOURS.needs, weight: 1, dashArray: '3 3', fillColor: COLOURS.needs, fillOpacity: 0.15 };
      }, needsPopup, null),
      fibre: vector('fibre', L_.fibre, function (f) {
        return isPlanned(f.properties) ? { color: COLOURS.fibrePlanned, weight: 3, dashArray: '8 6', opacity: 0.9 }
          : { color: COLOURS.fibreExisting, weight: 3.5, opacity: 0.95 };
      }, fibrePopup, null),
      fibre_plan: vector('fibre_plan', L_.fibre_plan, function (f) {
        return inPlan(f.properties) ? { color: COLOURS.planChosen, weight: 4, opacity: 0.95 }
          : { color: COLOURS.planOther, weight: 2.5, opacity: 0.9, dashArray: '2 5' };
      }, fibrePlanPopup, function (p) { return T.fibre_plan + ': ' + p.name; }),
      measurement_plan: vector('measurement_plan', L_.measurement_plan, function (f) {
        return { color: dayColour(f.properties.day), weight: 3, opacity: 0.85 };
      }, measurementPopup, function (p) { return p.kind === 'route' ? T.day + ' ' + p.day : p.name; }, function (f) {
        return { radius: 4, color: '#fff', weight: 1, fillOpacity: 1, fillColor: dayColour(f.properties.day) };
      }),
      centres: vector('centres', L_.centres, null, centrePopup, function (p) { return p.name; }, function (f) {
        return { radius: 7, color: '#000', weight: 1.5, fillOpacity: 1, fillColor: f.properties.reached ? COLOURS.reached : COLOURS.notReached };
      })
    };

    // Signal cells: one image per operator view, one layer in the control, an operator choice in its legend.
    // A view whose image is the same as another view's comes as that view's key (covgap/maps.py _shared_views).
    Object.keys(D.cells).forEach(function (view) {
      if (typeof D.cells[view] === 'string') { D.cells[view] = D.cells[D.cells[view]]; }
    });
    var cellViews = Object.keys(D.cells);
    var cellImages = {};
    cellViews.forEach(function (view) {
      var c = D.cells[view];
      cellImages[view] = L.imageOverlay(c.png, c.bounds, { pane: 'covgap-cells', className: 'covgap-cells', interactive: false });
    });
    var cellsLayer = L.layerGroup([]);
    var cellView = cellViews.indexOf('*') >= 0 ? '*' : cellViews[0];
    function setOperator(view) {
      if (!cellImages[view]) { return false; }
      cellsLayer.clearLayers();
      cellsLayer.addLayer(cellImages[view]);
      cellView = view;
      renderLegend();
      return true;
    }
    if (cellView !== undefined) { cellsLayer.addLayer(cellImages[cellView]); }
    layers.cells = cellsLayer;

    var basemap = L.tileLayer('https://tile.openstreetmap.org/{z}/{x}/{y}.png', {
      maxZoom: 19, attribution: '&copy; OpenStreetMap contributors'
    });

    var defaults = ['communes', 'villages_4g', 'no4g_zones', 'dead_zones', 'fibre', 'centres'];
    CONTEXT.forEach(function (k) { if (layers[k].getLayers().length) { defaults.unshift(k); } });
    defaults.forEach(function (k) { layers[k].addTo(map); });

    var overlays = {};
    overlays[T.layer_basemap] = basemap;
    CONTEXT.forEach(function (k) { if (layers[k].getLayers().length) { overlays[T['layer_' + k]] = layers[k]; } });
    overlays[T.layer_communes] = layers.communes;
    overlays[T.layer_villages_4g] = layers.villages_4g;
    overlays[T.layer_villages_fibre] = layers.villages_fibre;
    overlays[T.layer_dead_zones] = layers.dead_zones;
    overlays[T.layer_no4g_zones] = layers.no4g_zones;
    overlays[T.layer_needs_measurement] = layers.needs_measurement;
    overlays[T.layer_cells_control] = layers.cells;
    overlays[T.layer_fibre] = layers.fibre;
    overlays[T.layer_fibre_plan] = layers.fibre_plan;
    overlays[T.layer_measurement_plan] = layers.measurement_plan;
    overlays[T.layer_centres] = layers.centres;
    L.control.layers(null, overlays, { collapsed: false, position: 'topleft' }).addTo(map);

    // ------------------------------------------------------------------ legend
    var legend = L.control({ position: 'bottomleft' });
    var legendBox = el('div', { className: 'covgap-legend leaflet-bar' });
    legend.onAdd = function () {
      L.DomEvent.disableClickPropagation(legendBox);
      L.DomEvent.disableScrollPropagation(legendBox);
      return legendBox;
    };
    legend.addTo(map);
    function legendItem(swatch, text) { return el('div', { className: 'covgap-legend-item' }, [swatch, el('span', { text: text })]); }
    function box(colour, border, extra) {
      return el('span', { className: 'covgap-swatch', style: 'background:' + colour + ';border-color:' + (border || '#333') + ';' + (extra || '') });
    }
    function line(colour, dashed) {
      return el('span', { className: 'covgap-line', style: 'border-top: 3px ' + (dashed ? 'dashed ' : 'solid ') + colour });
    }
    function dot(colour) { return el('span', { className: 'covgap-dot big', style: 'background:' + colour }); }
    function legendSection(key) {
      var items;
      var title = T['layer_' + key];
      if (key === 'communes') { items = [legendItem(line(COLOURS.commune, false), T.commune_boundary)]; }
      else if (key === 'context_roads') { items = [legendItem(line(COLOURS.contextRoad, false), T.layer_context_roads)]; }
      else if (key === 'context_rivers') { items = [legendItem(line(COLOURS.contextRiver, false), T.layer_context_rivers)]; }
      else if (key === 'context_places') { items = [legendItem(dot(COLOURS.contextPlace), T.layer_context_places)]; }
      else if (key === 'villages_4g') {
        items = ['meets', 'fails', 'insufficient evidence'].map(function (v) { return legendItem(box(COLOURS[verdictKey(v)]), verdictLabel(v)); });
      } else if (key === 'villages_fibre') {
        items = [legendItem(box(COLOURS.fibreMeets), T.fibre_meets), legendItem(box(COLOURS.fibreMid), T.fibre_mid),
          legendItem(box(COLOURS.fibreLow), T.fibre_low), legendItem(box(COLOURS.fibreNone), T.fibre_none)];
      } else if (key === 'dead_zones') { items = [legendItem(box(COLOURS.dead, COLOURS.dead), T.dead_zone)]; }
      else if (key === 'no4g_zones') { items = [legendItem(box(COLOURS.no4g, COLOURS.no4g, 'border-style:dashed'), T.no4g_zone)]; }
      else if (key === 'needs_measurement') { items = [legendItem(box('rgba(106,81,163,0.2)', COLOURS.needs, 'border-style:dashed'), T.needs_measurement)]; }
      else if (key === 'fibre') { items = [legendItem(line(COLOURS.fibreExisting, false), T.fibre_existing), legendItem(line(COLOURS.fibrePlanned, true), T.fibre_planned)]; }
      else if (key === 'fibre_plan') { items = [legendItem(line(COLOURS.planChosen, false), T.fibre_plan_chosen), legendItem(line(COLOURS.planOther, true), T.fibre_plan_other)]; }
      else if (key === 'measurement_plan') {
        items = [legendItem(line(dayColour(1), false), T.measurement_route), legendItem(dot(dayColour(1)), T.measurement_waypoint)];
      }
      else if (key === 'centres') { items = [legendItem(dot(COLOURS.reached), T.centre_reached), legendItem(dot(COLOURS.notReached), T.centre_not_reached)]; }
      else if (key === 'cells') {
        title = fill(T.layer_cells, { operator: cellView === '*' ? T.any_operator : cellView });
        var counts = (D.cells[cellView] || {}).counts || {};
        var select = el('select', { 'aria-label': T.operator, id: 'covgap-operator' });
        cellViews.forEach(function (view) {
          var option = el('option', { value: view, text: view === '*' ? T.any_operator : view });
          if (view === cellView) { option.selected = true; }
          select.appendChild(option);
        });
        select.addEventListener('change', function () { setOperator(select.value); });
        items = [el('label', { className: 'covgap-legend-item' }, [el('span', { text: T.operator + ': ' }), select])];
        [['covered', COLOURS.cellCovered], ['weak_4g', COLOURS.cellWeak], ['no_4g', COLOURS.cellNo4g],
          ['no_service', COLOURS.cellNoService], ['insufficient_evidence', COLOURS.cellInsufficient]].forEach(function (c) {
          c.push(T['cell_' + c[0]]);
          items.push(legendItem(box(c[1], c[1]), c[2] + ' (' + num(counts[c[0]] || 0) + ' ' + T.cells_counts + ')'));
        });
      }
      return el('div', { className: 'covgap-legend-section', 'data-layer': key }, [el('h4', { text: title })].concat(items));
    }
    function renderLegend() {
      legendBox.textContent = '';
      legendBox.appendChild(el('h3', { text: T.legend }));
      ORDER.slice().reverse().forEach(function (key) { if (map.hasLayer(layers[key])) { legendBox.appendChild(legendSection(key)); } });
    }
    map.on('overlayadd overlayremove', renderLegend);

    // ------------------------------------------------------------------ panel: links, search, scorecard, changes
    var panel = el('aside', { id: 'covgap-panel', className: 'covgap-panel' });
    var toggle = el('button', { id: 'covgap-panel-toggle', type: 'button', text: T.panel_toggle, 'aria-expanded': 'true' });
    toggle.addEventListener('click', function () {
      var open = panel.classList.toggle('closed');
      toggle.setAttribute('aria-expanded', open ? 'false' : 'true');
    });
    document.body.appendChild(toggle);
    document.body.appendChild(panel);
    L.DomEvent.disableClickPropagation(panel);
    L.DomEvent.disableScrollPropagation(panel);

    var title = fill(D.kind === 'district' ? T.title_district : T.title_commune, { name: D.name });
    panel.appendChild(el('h1', { text: title }));
    if (D.data_period && D.data_period[0]) {
      panel.appendChild(el('p', { className: 'covgap-meta', text: fill(T.data_period, { first: D.data_period[0], last: D.data_period[1] }) }));
    }
    var nav = el('nav', { className: 'covgap-nav' });
    if (D.kind === 'commune') { nav.appendChild(el('a', { href: D.district_file, id: 'covgap-district-link', text: T.back_to_district })); }
    nav.appendChild(el('h2', { text: T.communes }));
    var list = el('ul', { id: 'covgap-commune-links' });
    D.pages.forEach(function (p) {
      var item = p.file === D.file ? el('strong', { text: p.name }) : el('a', { href: p.file, text: p.name });
      list.appendChild(el('li', null, [item]));
    });
    nav.appendChild(list);
    panel.appendChild(nav);

    // Search
    var villages = L_.villages.features.map(function (f) { return { p: f.properties, key: fold(f.properties.name) }; });
    var search = el('input', { id: 'covgap-search', type: 'search', placeholder: T.search_placeholder, 'aria-label': T.search, autocomplete: 'off' });
    var results = el('ul', { id: 'covgap-search-results', className: 'covgap-search-results' });
    function findLayer(group, p) {
      var found = null;
      group.eachLayer(function (l) { if (l.feature && l.feature.properties === p) { found = l; } });
      return found;
    }
    function showVillage(p) {
      var layer = findLayer(layers.villages_4g, p);
      // No animation: a popup opened while the map still moves is not panned into view.
      if (layer) { map.fitBounds(layer.getBounds(), { maxZoom: 16, padding: [40, 40], animate: false }); }
      else { map.setView(p.label, 15, { animate: false }); }
      L.popup({ maxWidth: 360, autoPanPadding: [20, 20] }).setLatLng(p.label).setContent(villagePopup(p)).openOn(map);
    }
    function runSearch() {
      var q = fold(search.value);
      results.textContent = '';
      if (!q) { return []; }
      var hits = villages.filter(function (v) { return v.key.indexOf(q) >= 0; }).slice(0, 30);
      if (!hits.length) { results.appendChild(el('li', { className: 'none', text: T.search_none })); }
      hits.forEach(function (v) {
        var b = el('button', { type: 'button', text: v.p.name + ' (' + v.p.commune + ')' });
        b.addEventListener('click', function () { showVillage(v.p); });
        results.appendChild(el('li', null, [b]));
      });
      return hits;
    }
    search.addEventListener('input', runSearch);
    search.addEventListener('keydown', function (e) {
      if (e.key === 'Enter') { var hits = runSearch(); if (hits.length) { showVillage(hits[0].p); } }
    });
    panel.appendChild(el('section', { className: 'covgap-search' }, [el('h2', { text: T.search }), search, results]));

    // Scorecard
    var F = D.figures;
    function status(s) {
      if (!s) { return el('td'); }
      return el('td', { className: 'covgap-status status-' + s.replace(/\s+/g, '-'), text: T['status_' + s] || s });
    }
    var evidence = fill(T.detail_evidence, { share: pct(F.evidence_share) });
    var rows = [
      ['villages_4g', pct(F.share_villages_4g), '100%', F.status_villages_4g,
        fill(T.detail_villages_4g, { meets: num(F.villages_meeting_4g), n: num(F.n_villages), fails: num(F.villages_failing_4g), insufficient: num(F.villages_insufficient_4g) }),
        evidence],
      ['no_dead_zones', num(F.dead_zones), '0', F.status_no_dead_zones,
        fill(T.detail_no_dead_zones, { area: num(F.dead_zone_area_km2, 2), households: num(F.households_in_dead_zones) }), evidence],
      ['fibre_households', pct(F.fibre_share), '> ' + Math.round(D.goal_share * 100) + '%', F.status_fibre_households,
        fill(T.detail_fibre_households, { passed: num(F.households_passed), households: num(F.households) }), T.detail_evidence_fibre],
      ['fibre_communes', pct(F.share_communes_reached), '100%', F.status_fibre_communes,
        fill(T.detail_fibre_communes, { reached: num(F.communes_reached), total: num(F.communes) }), T.detail_evidence_fibre]
    ];
    var tbody = el('tbody');
    rows.forEach(function (r) {
      tbody.appendChild(el('tr', { 'data-target': r[0] }, [
        el('td', null, [el('div', { className: 'covgap-target', text: T['target_' + r[0]] }), el('div', { className: 'covgap-detail', text: r[4] })]),
        el('td', { className: 'covgap-value', text: r[1] }), el('td', { text: r[2] }), status(r[3]),
        el('td', { className: 'covgap-evidence', text: r[5] })
      ]));
    });
    panel.appendChild(el('section', { id: 'covgap-scorecard' }, [
      el('h2', { text: T.scorecard + ': ' + D.name }),
      el('table', null, [el('thead', null, [el('tr', null, [el('th', { text: T.target }), el('th', { text: T.value }),
        el('th', { text: T.goal }), el('th', { text: T.status }), el('th', { text: T.evidence })])]), tbody])
    ]));

    // The fibre plan: how much spur passes the goal (analysis: covgap/plans.py)
    var planText;
    var planValues = { km: num((F.fibre_plan_m || 0) / 1000, 1), n: num(F.fibre_plan_spurs), cost: money(F.fibre_plan_cost_vnd),
      goal: Math.round(D.goal_share * 100) + '%', share: pct(F.fibre_plan_share_after) };
    if (missing(F.fibre_plan_spurs)) { planText = null; }
    else if (!F.fibre_plan_reaches_goal) { planText = fill(T.plan_fibre_unreachable, planValues); }
    else if (F.fibre_plan_spurs === 0) { planText = fill(T.plan_fibre_met, planValues); }
    else { planText = fill(T.plan_fibre, planValues); }
    if (planText) { panel.appendChild(el('p', { id: 'covgap-fibre-plan', className: 'covgap-plan', text: planText })); }
    var M = D.measurement_plan;
    if (M && D.kind === 'district') {
      panel.appendChild(el('p', { id: 'covgap-measurement-plan', className: 'covgap-plan', text: fill(T.plan_measure, {
        days: num(M.days), km: num(M.km, 0), n: num(M.waypoints), villages: num(M.villages_decided), households: num(M.households_decided) }) }));
    }

    // What changed since the previous run
    if (D.changes) {
      var section = el('section', { id: 'covgap-changes' }, [el('h2', { text: T.changes })]);
      if (!D.changes.length) { section.appendChild(el('p', { text: T.no_changes })); }
      else {
        var cbody = el('tbody');
        D.changes.forEach(function (c) {
          cbody.appendChild(el('tr', null, [el('td', { text: T['kind_' + c.kind] || c.kind }), el('td', { text: c.name || c.id }),
            el('td', { text: T['change_' + c.change] || c.change }), el('td', { text: c.detail })]));
        });
        section.appendChild(el('table', null, [el('thead', null, [el('tr', null, [el('th', { text: T.change_kind }),
          el('th', { text: T.change_name }), el('th', { text: T.change_change }), el('th', { text: T.change_detail })])]), cbody]));
      }
      panel.appendChild(section);
    }
    panel.appendChild(el('p', { className: 'covgap-meta', text: T.offline_note }));

    // ------------------------------------------------------------------ view
    var bounds = null;
    ['villages_4g', 'dead_zones', 'no4g_zones', 'centres'].forEach(function (k) {
      var b = layers[k].getBounds();
      if (b.isValid()) { bounds = bounds ? bounds.extend(b) : L.latLngBounds(b.getSouthWest(), b.getNorthEast()); }
    });
    if (D.kind === 'district' || !bounds) {
      var cb = layers.communes.getBounds();
      if (cb.isValid()) { bounds = cb; }
    }
    map.options.zoomSnap = 0.25;
    renderLegend();
    // Opened in print mode (covgap map --png/--pdf): fit the area between the legend and the panel.
    var printing = !!(window.matchMedia && window.matchMedia('print').matches);
    if (bounds) {
      var wide = map.getSize().x > 900;
      map.fitBounds(bounds, printing
        ? { paddingTopLeft: [legendBox.offsetWidth + 16, 16], paddingBottomRight: [panel.offsetWidth + 16, 16] }
        : { paddingTopLeft: [wide ? 250 : 20, 20], paddingBottomRight: [wide ? 380 : 20, 20] });
    }

    // For tests and for anyone scripting the page.
    window.covgap = {
      map: map, layers: layers, basemap: basemap, data: D, setOperator: setOperator,
      operator: function () { return cellView; },
      featureCounts: function () {
        var out = {};
        Object.keys(layers).forEach(function (k) {
          if (k === 'cells') { out[k] = map.hasLayer(layers.cells) ? layers.cells.getLayers().length : 0; return; }
          out[k] = map.hasLayer(layers[k]) ? layers[k].getLayers().length : 0;
        });
        return out;
      },
      showVillage: function (name) {
        var v = villages.filter(function (x) { return x.p.name === name; })[0];
        if (v) { showVillage(v.p); }
        return !!v;
      },
      villagePoint: function (name) {
        var v = villages.filter(function (x) { return x.p.name === name; })[0];
        if (!v) { return null; }
        var pt = map.latLngToContainerPoint(v.p.label);
        var box = map.getContainer().getBoundingClientRect();
        return { x: pt.x + box.left, y: pt.y + box.top };
      }
    };
    document.body.setAttribute('data-covgap-ready', '1');
  };
})();
