/**
 * The Leaflet side of /map: the city's grid cells as the base (no tile server needed), a tile layer when the
 * deployment names one, and the cases as markers clustered by leaflet.markercluster. Only the map route imports
 * this module, so Leaflet is in that route's chunk and never in the first view.
 *
 * Keyboard: Leaflet makes each marker and cluster a focusable button; Enter or Space opens a case or zooms into
 * a cluster, as a click does.
 */
import L from "leaflet";
import "leaflet.markercluster";
import "leaflet/dist/leaflet.css";
import "leaflet.markercluster/dist/MarkerCluster.css";
import "./map.css";

import { clusterTone, gridShade, markerLook, type Box } from "./points";

export interface MapPoint {
  id: string;
  lat: number;
  lng: number;
  status: string;
  category: string;
  deadline: string;
}

export interface GridCell {
  id: string;
  name: string;
  geometry: Record<string, unknown>;
}

export interface CaseMapOptions {
  tileUrl: string | null;
  tileAttribution: string;
  /** The accessible name of a case's marker, e.g. "违停 · 已派遣 · 即将到期". */
  describe: (point: MapPoint) => string;
  /** The accessible name of a cluster. */
  describeCluster: (count: number, overdue: number, dueSoon: number) => string;
  describeGrid: (cell: GridCell, count: number) => string;
  zoomIn: string;
  zoomOut: string;
  open: (caseId: string) => void;
  moved: (view: Box) => void;
}

interface CaseMarker extends L.Marker {
  point: MapPoint;
}

const MARKER_PX = 18;

export class CaseMap {
  private readonly map: L.Map;
  private readonly grids: L.GeoJSON;
  private readonly clusters: L.MarkerClusterGroup;
  private readonly cells = new Map<string, { layer: L.Path; cell: GridCell }>();

  constructor(element: HTMLElement, private readonly options: CaseMapOptions) {
    this.map = L.map(element, { zoomControl: false, preferCanvas: false, minZoom: 3, maxZoom: 19 });
    L.control.zoom({ zoomInTitle: options.zoomIn, zoomOutTitle: options.zoomOut }).addTo(this.map);
    this.map.attributionControl.setPrefix(false);
    if (options.tileUrl) {
      L.tileLayer(options.tileUrl, { attribution: options.tileAttribution, maxZoom: 19 }).addTo(this.map);
    }
    this.grids = L.geoJSON(undefined, {
      style: () => ({ color: "#1e6fd9", weight: 1.5, fillColor: "#1e6fd9", fillOpacity: 0.04 }),
    }).addTo(this.map);
    this.clusters = L.markerClusterGroup({
      showCoverageOnHover: false,
      chunkedLoading: false,
      maxClusterRadius: 48,
      iconCreateFunction: (cluster) => this.clusterIcon(cluster),
    });
    this.clusters.on("click", (event) => {
      const marker = (event as L.LeafletMouseEvent & { layer: CaseMarker }).layer;
      options.open(marker.point.id);
    });
    this.clusters.addTo(this.map);
    this.map.on("moveend", () => options.moved(this.view()));
    element.addEventListener("keydown", (event) => this.pressed(event));
  }

  /** The grid cells, drawn once; the view fits them. */
  showGrids(cells: GridCell[]): void {
    this.grids.clearLayers();
    this.cells.clear();
    for (const cell of cells) {
      const feature: GeoJSON.Feature = { type: "Feature", properties: { id: cell.id },
        geometry: cell.geometry as unknown as GeoJSON.Geometry };
      this.grids.addData(feature);
    }
    this.grids.eachLayer((layer) => {
      const id = ((layer as L.GeoJSON).feature as GeoJSON.Feature).properties?.id as string;
      const cell = cells.find((c) => c.id === id);
      if (cell) {
        this.cells.set(id, { layer: layer as L.Path, cell });
        (layer as L.Path).bindTooltip(this.options.describeGrid(cell, 0), { sticky: true });
      }
    });
    const bounds = this.grids.getBounds();
    if (bounds.isValid()) {
      this.map.fitBounds(bounds, { padding: [8, 8] });
    } else {
      this.map.setView([35.06, 118.35], 12);
    }
  }

  /** The cases to draw, replacing those drawn; and the count per grid cell, which shades the cells. */
  showPoints(points: MapPoint[], counts: { grid_id: string; count: number }[]): void {
    const markers = points.map((point) => this.marker(point));
    this.clusters.clearLayers();
    this.clusters.addLayers(markers);
    const busiest = Math.max(0, ...counts.map((row) => row.count));
    const byGrid = new Map(counts.map((row) => [row.grid_id, row.count]));
    for (const [id, { layer, cell }] of this.cells) {
      const count = byGrid.get(id) ?? 0;
      layer.setStyle({ fillOpacity: gridShade(count, busiest) });
      layer.setTooltipContent(this.options.describeGrid(cell, count));
    }
  }

  view(): Box {
    const bounds = this.map.getBounds().pad(0.1);
    return { minLng: bounds.getWest(), minLat: bounds.getSouth(), maxLng: bounds.getEast(), maxLat: bounds.getNorth() };
  }

  resize(): void {
    this.map.invalidateSize();
  }

  remove(): void {
    this.map.remove();
  }

  private marker(point: MapPoint): CaseMarker {
    const look = markerLook(point);
    const icon = L.divIcon({
      className: "case-marker",
      html: `<span class="case-dot${look.urgent ? " urgent" : ""}" data-case="${escape(point.id)}" `
        + `style="background:${look.fill};border-color:${look.ring}"></span>`,
      iconSize: [MARKER_PX, MARKER_PX],
      iconAnchor: [MARKER_PX / 2, MARKER_PX / 2],
    });
    const marker = L.marker([point.lat, point.lng], { icon, title: this.options.describe(point), keyboard: true }) as
      CaseMarker;
    marker.point = point;
    return marker;
  }

  private clusterIcon(cluster: L.MarkerCluster): L.DivIcon {
    const deadlines = cluster.getAllChildMarkers().map((m) => (m as CaseMarker).point.deadline);
    const count = deadlines.length;
    const overdue = deadlines.filter((d) => d === "overdue").length;
    const dueSoon = deadlines.filter((d) => d === "due_soon").length;
    const size = count < 10 ? 30 : count < 100 ? 36 : count < 1000 ? 42 : 48;
    const name = this.options.describeCluster(count, overdue, dueSoon);
    return L.divIcon({
      className: `case-cluster ${clusterTone(deadlines)}`,
      html: `<span aria-hidden="true">${count}</span><span class="visually-hidden">${escape(name)}</span>`,
      iconSize: [size, size],
    });
  }

  /** Enter or Space on a focused marker or cluster does what a click does. */
  private pressed(event: KeyboardEvent): void {
    const target = event.target as HTMLElement | null;
    if ((event.key === "Enter" || event.key === " ") && target?.classList.contains("leaflet-marker-icon")) {
      event.preventDefault();
      target.click();
    }
  }
}

function escape(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
